"""Durable storage: the Raft log, the hard state and the snapshots.

Theory of operation: three independent stores, each owning its own files under
``RAFT_VOLUME_DIR`` and each safe against torn writes and crashes on its own.
``LogStore`` appends in batches and makes them durable with one ``sync``;
``StableStore`` rewrites term and vote atomically; ``SnapshotStore`` publishes
a snapshot only once it is complete. None of them knows about Raft's rules;
the runtime decides what to write and when, following the core's effects.

What a crash can leave half-written (a torn log tail, a snapshot still in its
``.tmp`` directory, one of the two stable-store copies) is repaired on open.
Damage to anything that was durable is refused with
:class:`StorageCorruptError` (``errors.py``), before any file is changed.
"""

from .errors import RECOVERY, StorageCorruptError
from .log_store import LogCorruptError, LogStore
from .snapshot_store import SnapshotCorruptError, SnapshotStore, SnapshotWriter
from .stable_store import StableStore, StableStoreCorruptError

__all__ = [
    "RECOVERY",
    "LogCorruptError", "LogStore",
    "SnapshotCorruptError", "SnapshotStore", "SnapshotWriter",
    "StableStore", "StableStoreCorruptError",
    "StorageCorruptError",
]
