"""The key-value state machine that Raft replicates (hashicorp/raft's FSM).

:mod:`.kvstore` keeps it in SQLite (``KVStore``, and ``KVReader`` for the HTTP
workers), :mod:`.commands` is the form of the commands it applies (set, del,
setm) and how a log line shows one, and :mod:`.hraftd` applies hraftd's JSON
commands and snapshot format instead (``RAFT_FSM=hraftd``), for a node in a
cluster of Go nodes.
"""
