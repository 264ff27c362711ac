"""A simulated node's disk: what survives a crash.

Theory of operation: :class:`Durable` is the executor's ``Storage`` for a
simulated node. Every write is durable the moment it is made (``sync`` has
nothing to do); losing unsynced writes is modelled one level up, by a crash
in the middle of a step, which drops the whole step before the executor sees
it. The store keeps the rules of the real log store that Raft must live with:
an append continues the stored log (only an empty store may start anywhere),
and compaction removes whole segments, so entries below a snapshot may remain.
Like the live node's volume, which holds the key-value store, restoring a
snapshot also replaces the state machine's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from raftkv.raft.messages import Entry, SnapshotMeta

from .invariants import Violation
from .state_machine import DictStateMachine

__all__ = ["SEGMENT_ENTRIES", "Durable"]

SEGMENT_ENTRIES = 16


@dataclass
class Durable:
    """The fsync'd hard state, log and snapshot of one node."""
    node_id: str = ""
    volume: str = ""  # the volume identity; a wiped node starts on a new one
    term: int = 0
    voted_for: str | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    snapshot: SnapshotMeta | None = None
    snapshot_state: dict = field(default_factory=dict)
    commit_hint: int = 0
    # the running incarnation's state machine (volatile: replaced at boot)
    state_machine: DictStateMachine | None = field(default=None, repr=False, compare=False)

    @property
    def last_index(self) -> int:
        """The last index the store covers, by its log or its snapshot."""
        last = max(self.entries) if self.entries else 0
        return max(last, self.snapshot.index if self.snapshot else 0)

    def set_hard_state(self, term: int, voted_for: str | None) -> None:
        self.term, self.voted_for = term, voted_for

    def append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        if self.entries and first != max(self.entries) + 1:
            raise Violation("Storage", f"{self.node_id} appends at {first} to a stored log "
                            f"ending at {max(self.entries)}")
        for e in entries:
            self.entries[e.index] = e

    def truncate_from(self, index: int) -> None:
        for i in [i for i in self.entries if i >= index]:
            del self.entries[i]

    def compact_through(self, index: int) -> None:
        # whole segments go (SEGMENT_ENTRIES entries each); compacting through
        # the last entry empties the store
        through = index
        if self.entries and through < max(self.entries):
            through -= through % SEGMENT_ENTRIES
        for i in [i for i in self.entries if i <= through]:
            del self.entries[i]

    def sync(self) -> None:
        pass  # every write above is already durable

    def restore_snapshot(self, meta: SnapshotMeta, data: object) -> None:
        self.snapshot = meta
        self.snapshot_state = dict(data)
        self.commit_hint = max(self.commit_hint, meta.index)
        if self.state_machine is not None:
            self.state_machine.restore(meta.index, self.snapshot_state)

    def store_snapshot(self, meta: SnapshotMeta, state: dict) -> None:
        """A snapshot the node took of its own state machine."""
        self.snapshot = meta
        self.snapshot_state = dict(state)
