"""Snapshot IO of a live node: what the transport streams to a follower,
what it writes a received snapshot into, and restoring the state machine
from a stored snapshot with hashicorp's progress lines."""

from __future__ import annotations

from typing import BinaryIO

from raftkv.observability import hclog
from raftkv.raft.messages import SnapshotMeta
from raftkv.statemachine.kvstore import KVStore
from raftkv.storage import SnapshotCorruptError, SnapshotStore

raft_log = hclog.get_logger("raft")

__all__ = ["LazySnapshotReader", "ReceivedSnapshot", "restore_state_machine"]


def percent(done: int, total: int) -> str:
    return "%.2f%%" % (100.0 * done / total if total else 100.0)


class LazySnapshotReader:
    """What the transport streams to a follower. Opening a snapshot verifies
    its CRC by reading it whole, so it happens on the first ``read`` (which
    the transport runs on a worker thread), not in the event loop."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta) -> None:
        self.store = store
        self.meta = meta
        self._file: BinaryIO | None = None

    def _open(self):
        try:
            return self.store.open(self.meta.id)[1]
        except (OSError, SnapshotCorruptError):
            # The core may name a snapshot by the id its leader gave it; ours
            # of the same point has a different id.
            for meta in self.store.list():
                if meta.index == self.meta.index and meta.term == self.meta.term:
                    return self.store.open(meta.id)[1]
            raise

    def read(self, n: int) -> bytes:
        f = self._file
        if f is None:
            f = self._file = self._open()
        return f.read(n)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _CountingReader:
    """Counts the bytes the state machine reads while restoring."""

    def __init__(self, f) -> None:
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data


class ReceivedSnapshot:
    """The transport's sink for a snapshot streamed from the leader: the
    snapshot store's writer, plus hashicorp's transfer log lines."""

    def __init__(self, writer, expected: int) -> None:
        self.writer = writer
        self.expected = expected
        self.received = 0

    def write(self, data: bytes) -> int:
        self.received += len(data)
        return self.writer.write(data)

    def close(self) -> SnapshotMeta:
        raft_log.info("snapshot network transfer progress",
                      **{"read-bytes": self.received,
                         "percent-complete": percent(self.received, self.expected or self.received)})
        stored = self.writer.close()
        raft_log.info("copied to local snapshot", bytes=self.received)
        return stored

    def cancel(self) -> None:
        self.writer.cancel()


def restore_state_machine(kv: KVStore, meta: SnapshotMeta, f) -> None:
    reader = _CountingReader(f)
    kv.restore(reader)
    raft_log.info("snapshot restore progress", **{"id": meta.id, "last-index": meta.index,
                                                 "last-term": meta.term, "size-in-bytes": meta.size,
                                                 "read-bytes": reader.count,
                                                 "percent-complete": percent(reader.count, meta.size)})
