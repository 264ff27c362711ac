"""The ReadIndex queue (Raft thesis §6.4, etcd-io/raft's read_only.go).

Theory of operation: a linearizable read needs the leader to prove it is still
the leader *after* the read arrived. Each read records the commit index at
arrival (its read index) and the number of the heartbeat round that will
confirm it. At most one round is in flight: reads arriving meanwhile wait for
the next round, so one round confirms every read queued behind it. A round is
confirmed when a quorum of voters echoed its sequence number; the reads of
that round are then ready (the state machine has applied their read index
because the core applies everything it commits at once).
"""

from __future__ import annotations

from collections import deque


class ReadOnly:
    __slots__ = ("started_seq", "confirmed_seq", "queue")

    def __init__(self) -> None:
        self.started_seq = 0     # newest round whose heartbeats went out
        self.confirmed_seq = 0   # newest round a quorum echoed
        self.queue: deque[tuple[int, int, int]] = deque()  # (request_id, read_index, seq)

    @property
    def round_in_flight(self) -> bool:
        return self.started_seq > self.confirmed_seq

    def add(self, request_id: int, read_index: int) -> bool:
        """Queue a read; True if a new round must start now."""
        if self.round_in_flight:
            self.queue.append((request_id, read_index, self.started_seq + 1))
            return False
        self.started_seq += 1
        self.queue.append((request_id, read_index, self.started_seq))
        return True

    def add_unconfirmed(self, request_id: int) -> None:
        """Queue a read that needs no round (a lone voter) but must wait for
        the leader's first commit of its term; ``take_all`` releases it."""
        self.queue.append((request_id, -1, 0))

    def take_all(self) -> list[tuple[int, int]]:
        """Release every queued read, whatever its round (a lone voter)."""
        ready = [(request_id, index) for request_id, index, _ in self.queue]
        self.queue.clear()
        return ready

    def confirm(self, quorum_seq: int) -> tuple[list[tuple[int, int]], bool]:
        """A quorum echoed ``quorum_seq``: return the ready reads and whether a
        new round must start for reads that queued behind the old one."""
        if quorum_seq <= self.confirmed_seq:
            return [], False
        self.confirmed_seq = min(quorum_seq, self.started_seq)
        ready = []
        while self.queue and self.queue[0][2] <= self.confirmed_seq:
            request_id, index, _ = self.queue.popleft()
            ready.append((request_id, index))
        start_next = bool(self.queue) and not self.round_in_flight
        if start_next:
            self.started_seq += 1
        return ready, start_next

    def drain(self) -> list[int]:
        """Forget every pending read (leadership lost); returns their ids."""
        ids = [request_id for request_id, _, _ in self.queue]
        self.queue.clear()
        return ids
