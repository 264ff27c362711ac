"""The runtime of one raftkv node: everything with side effects around the
sans-IO Raft core.

``runtime.Node`` opens the volume, runs the driver (the only caller of
``RaftNode.step``), carries out the core's effects through
``executor.EffectExecutor``, and offers the narrow handle the HTTP side uses:
propose, read, membership, leadership transfer, snapshot and restore, and
frozen status views. Nothing here imports :mod:`raftkv.http`.
"""
