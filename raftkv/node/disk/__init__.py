"""A node's disk: its volume and what the runtime does with it.

:mod:`.volume` (the volume lock, the durable stores, recovery at start-up, the
volume identity), :mod:`.watchdog` (the volume still there and writable: the
start check, the LOCK-file check, exit codes 73/74) and :mod:`.snapshots`
(snapshot IO: streaming to a follower, receiving, restoring the state
machine). docs/disks.md tells what raftkv promises about disks.
"""
