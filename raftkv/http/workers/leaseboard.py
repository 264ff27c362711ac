"""The read lease as a node's HTTP workers see it: a small memory-mapped
file the Raft process writes and every worker reads, so that a worker serves
a ``level=lease`` read with no message to the Raft process.

What is on it is what the core says (``RaftNode.read_lease``): until when a
read may be served without a heartbeat round, and the index the worker's view
of the state machine must have reached (``floor``: every entry of earlier
terms). The Raft process writes it after the core's steps that changed it and
before any message those steps send leaves (``Node.lease_listener``), so a
handover's TimeoutNow never leaves while a worker still sees the lease.

The times are ``time.monotonic()`` in ms: CLOCK_MONOTONIC, one clock for
every process of the machine, the one the core's ``now`` is read from.

The board also holds the Raft process's applied index, and the highest
applied index at which keys changed (``changed``: the state machine's
``changed_index``; no-ops, such as the entries that renew the lease, and
configuration changes leave it behind), written just before the state
machine's file commits those entries (so before any process can read them
there, and before any write among them is acknowledged). ``changed`` is
written first and ``applied`` second, and a reader reads them in the other
order, so the ``changed`` it finds covers every entry up to the ``applied``
it found. A worker whose view of the file has reached ``changed`` holds the
keys and values as of ``applied``: every acknowledged write, and every entry
another read may have seen, is in its view, and it needs no new look for a
read; a worker whose view is short of it looks again.

Six native 64-bit integers: a sequence number, ``until``, ``floor`` and the
lease's duration at offset 0, then the applied index and ``changed``. The
writer of the lease makes the sequence odd, writes the fields, then makes it
even; a reader that saw an odd or changed sequence read a half-written lease
and takes none (a seqlock). Aligned 8-byte stores and loads are single
instructions on the 64-bit machines raftkv runs on (so the two indexes need
no sequence: each is one field, and their order is the one above), and stores
are seen in the order they were made (x86-64; on other machines the syscalls
between a write and the next read order them in practice).
"""

from __future__ import annotations

import mmap
import os
import struct
import time

__all__ = ["LeaseBoard"]

_FIELD = struct.Struct("@q")
# sequence, until, floor, duration in one call, which reads them in the order
# of their offsets (CPython's struct), the sequence first
_LEASE = struct.Struct("@4q")
_SIZE = 6 * _FIELD.size
_SEQ, _UNTIL, _FLOOR, _DURATION, _APPLIED, _CHANGED = (i * _FIELD.size for i in range(6))


class LeaseBoard:
    """One end of the shared lease: ``writer=True`` in the Raft process
    (creates the file, starting with no lease), else a worker's."""

    def __init__(self, path: str, *, writer: bool = False) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT if writer else os.O_RDONLY
        fd = os.open(path, flags, 0o600)
        try:
            if writer:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE if writer else mmap.PROT_READ)
        finally:
            os.close(fd)
        if writer:
            self._map[:] = bytes(_SIZE)
        self._seq = 0

    def publish(self, until: int, floor: int, duration: int) -> None:
        """The lease the core holds now (``until`` 0: none)."""
        view = self._map
        self._seq += 1
        _FIELD.pack_into(view, _SEQ, 2 * self._seq - 1)
        _FIELD.pack_into(view, _UNTIL, until)
        _FIELD.pack_into(view, _FLOOR, floor)
        _FIELD.pack_into(view, _DURATION, duration)
        _FIELD.pack_into(view, _SEQ, 2 * self._seq)

    def publish_applied(self, index: int, changed: int | None = None) -> None:
        """The state machine's file holds, or is committing, every entry up
        to ``index``; keys last changed at ``changed`` (None: at ``index``,
        which no reader can take for more than it is)."""
        view = self._map
        _FIELD.pack_into(view, _CHANGED, index if changed is None else changed)
        _FIELD.pack_into(view, _APPLIED, index)

    def applied_and_changed(self) -> tuple[int, int]:
        """``(applied, changed)``; ``changed`` covers every entry up to ``applied``."""
        view = self._map
        applied = _FIELD.unpack_from(view, _APPLIED)[0]
        return applied, _FIELD.unpack_from(view, _CHANGED)[0]

    def read(self) -> tuple[int, int, int] | None:
        """``(until, floor, duration)`` as last published, or None when
        caught half-written (the caller takes no lease then)."""
        view = self._map
        seq, until, floor, duration = _LEASE.unpack_from(view, _SEQ)
        if seq & 1 or _FIELD.unpack_from(view, _SEQ)[0] != seq:
            return None
        return until, floor, duration

    @staticmethod
    def now() -> float:
        """The board's clock, in ms."""
        return time.monotonic() * 1000

    def close(self) -> None:
        self._map.close()
