"""Simulated clients: writes, and reads at every level of docs/reads.md.

Theory of operation: a :class:`ClientModel` asks nodes for writes and reads
the way the HTTP layer asks its node's core, and watches what each node's
executor hands back (``SimCluster.on_effects``): a write is acknowledged
when its entry is applied, with the term it was proposed in, on the node
that took it. Reads, by level:

- ``none``: the node's own state at once; ``weak``: the same, on a node that
  believes it leads (elsewhere it is refused, and the HTTP layer would
  forward it). Both are allowed to be stale: they are counted, not checked;
- ``linearizable`` and ``lease``: a ``ReadIndex`` (with ``lease``, answered at
  once under the leader's read lease); served when ``ReadReady`` arrives;
- ``strong``: a proposal of an entry that changes nothing, served when that
  entry is applied on the node that proposed it (as ``level=strong`` is).

A read at the last three levels must see every write acknowledged before it
began, and the value the committed log gives at the state it was served from
(:meth:`InvariantChecker.check_read`); the first breach raises. A scripted
scenario that shows a level's documented limit (a ``lease`` read on a node
whose clock drifts beyond ``RaftConfig.lease_drift``) sets
``record_documented_limits``: such a read is then recorded as stale, with
the reason, instead of raising. Every other stale read still raises.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.messages import EntryType

from .invariants import Violation
from .state_machine import NOTHING, apply_command, encode_command

LEVELS = ("none", "weak", "linearizable", "lease", "strong")
CHECKED_LEVELS = ("linearizable", "lease", "strong")


@dataclass
class Read:
    request_id: int
    node: str
    key: str
    level: str
    began: int                 # simulated ms it was asked at
    acked_before: int          # the highest index acknowledged when it was asked
    index: int | None = None   # its read index (ReadIndex) or its entry's index (strong)
    term: int | None = None    # its entry's term (strong)
    outcome: str = "waiting"   # "served" or "refused"
    served_at: int = 0         # the applied index of the state it was served from
    value: str | None = None
    stale: bool = False        # the state it saw misses a write acknowledged before it began
    why: str = ""              # for a stale read: the documented limit it shows; for a refusal: the core's error


class ClientModel:
    """Closed-loop clients: propose writes, ask for reads, remember acks."""

    def __init__(self, cluster, checker) -> None:
        self.cluster = cluster
        self.checker = checker
        self.next_id = 0
        self.pending: dict[int, tuple] = {}          # request_id -> (kind, payload, call time, acked_before)
        self.proposed: dict[int, tuple[str, int, int]] = {}   # request_id -> (node, index, term)
        # the same proposals by where they sit, so that an applied entry finds
        # its own without a scan; a request id rejected since is skipped there
        self._proposed_at: dict[tuple[str, int], list[int]] = {}   # (node, index) -> request ids
        self.acked: dict[int, int] = {}               # index -> term of acknowledged writes
        self.max_acked = 0
        self.reads = 0             # served and checked (linearizable, lease, strong)
        self.unchecked_reads = 0   # served at none or weak
        self.stale_reads = 0       # of those, or recorded as a documented limit, the stale ones
        self.waiting: dict[int, Read] = {}
        self.on_read: list = []    # callbacks(Read) as a read is served or refused
        self.record_documented_limits = False
        self.levels = random.Random(0)   # which level the randomized runs' reads ask for
        cluster.on_effects.append(self.observe)

    def _request_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def write(self, node_id: str, key: str, value: str | None, label: str | None = None) -> int:
        rid = self._request_id()
        self.pending[rid] = ("write", node_id, self.cluster.now, self.max_acked)
        self.cluster.step(node_id, ev.Propose(rid, encode_command(key, value)), label=label)
        return rid

    def read(self, node_id: str, key: str, lease: bool = False, level: str | None = None,
             label: str | None = None) -> Read:
        level = level or ("lease" if lease else "linearizable")
        if level not in LEVELS:
            raise ValueError(f"unknown read level {level!r}; one of {', '.join(LEVELS)}")
        read = Read(self._request_id(), node_id, key, level, self.cluster.now, self.max_acked)
        node = self.cluster.nodes[node_id]
        if level in ("none", "weak"):
            if not node.alive:
                self._refuse(read, "node is down")
            elif level == "weak" and not node.raft.is_leader:
                self._refuse(read, "node is not the leader")
            else:
                self._serve(node, read)
            return read
        self.waiting[read.request_id] = read
        if level == "strong":
            self.cluster.step(node_id, ev.Propose(read.request_id, NOTHING), label=label)
        else:
            self.cluster.step(node_id, ev.ReadIndex(read.request_id, lease=level == "lease"), label=label)
        return read

    def pick_level(self) -> str:
        roll = self.levels.random()
        return ("linearizable" if roll < 0.3 else "lease" if roll < 0.6 else "strong" if roll < 0.75
                else "weak" if roll < 0.9 else "none")

    def observe(self, node, effects) -> None:
        for effect in effects:
            t = type(effect)
            if t is fx.Proposed:
                read = self.waiting.get(effect.request_id)
                if read is not None:
                    read.index, read.term = effect.index, effect.term
                elif effect.request_id in self.pending:
                    self.proposed[effect.request_id] = (node.id, effect.index, effect.term)
                    self._proposed_at.setdefault((node.id, effect.index), []).append(effect.request_id)
            elif t is fx.Apply:
                self._applied(node, effect.entries)
            elif t is fx.ReadReady:
                read = self.waiting.pop(effect.request_id, None)
                if read is not None:
                    read.index = effect.index
                    if node.applied_index < effect.index:
                        raise Violation("Linearizable read", f"{read.node} ready at {effect.index} "
                                                             f"with applied {node.applied_index}")
                    self._serve(node, read)
            elif t is fx.Rejected:
                self.pending.pop(effect.request_id, None)
                self.proposed.pop(effect.request_id, None)
                read = self.waiting.pop(effect.request_id, None)
                if read is not None:
                    self._refuse(read, effect.error)

    def _applied(self, node, entries) -> None:
        for e in entries:
            if e.type is not EntryType.COMMAND:
                continue
            for rid in self._proposed_at.pop((node.id, e.index), ()):
                proposal = self.proposed.get(rid)
                if proposal is None or proposal[:2] != (node.id, e.index):
                    continue
                del self.proposed[rid]
                self.pending.pop(rid, None)
                term = proposal[2]
                if term == e.term:
                    self.acked[e.index] = term
                    self.max_acked = max(self.max_acked, e.index)
        if self.waiting:
            last = entries[-1].index
            for read in list(self.waiting.values()):
                if read.level == "strong" and read.node == node.id and read.index is not None \
                        and read.index <= last:
                    del self.waiting[read.request_id]
                    if self._entry_term(read.index) == read.term:
                        self._serve(node, read)
                    else:
                        self._refuse(read, "its entry was overwritten by another leader's")

    def _entry_term(self, index: int) -> int | None:
        record = self.checker.committed.get(index)
        return None if record is None else record[0]

    def _serve(self, node, read: Read) -> None:
        """The read sees ``node``'s state as it is now."""
        read.outcome, read.served_at, read.value = "served", node.applied_index, node.state.get(read.key)
        read.stale = read.served_at < read.acked_before
        if read.level in CHECKED_LEVELS:
            try:
                self._check(read)
            except Violation:
                why = self._documented_limit(read)
                if why is None:
                    raise
                read.stale, read.why = True, why
            self.reads += 1
        else:
            self.unchecked_reads += 1
            if read.stale:
                read.why = self._documented_limit(read) or ""
        self.stale_reads += read.stale
        for callback in self.on_read:
            callback(read)

    def _check(self, read: Read) -> None:
        expected = self.committed_value(read.key, read.served_at)
        if read.level == "strong":
            # its entry is in the log after every write acknowledged before
            # the read began, and the state it saw includes that entry
            if read.index is None or read.index <= read.acked_before:
                raise Violation("Strong read", f"{read.node} served a read through entry {read.index}, not after "
                                               f"index {read.acked_before} acknowledged before the read began")
            if read.served_at < read.index:
                raise Violation("Strong read", f"{read.node} served a read from applied {read.served_at}, "
                                               f"before its entry {read.index} was applied")
            self.checker.check_read(read.node, read.served_at, read.acked_before, read.value, expected)
        else:
            self.checker.check_read(read.node, read.index, read.acked_before, read.value, expected)

    def _documented_limit(self, read: Read) -> str | None:
        """Why a stale read is within what its level promises, or None."""
        if read.level == "none":
            return f"{read.node} answers from its own state, which may be behind"
        if read.level == "weak":
            return (f"{read.node} believes it leads and answers from its own state without checking; cut off "
                    "from the others, it cannot know that they elected a newer leader")
        drift = self.cluster.config.lease_drift
        # the holder's clock running slow, or a successor's running fast,
        # lets a lease outlive the successor's wait
        beyond = [f"{node}'s clock runs at {rate:.0%} of real time" for node, rate in
                  sorted(self.cluster.clock_rates.items()) if abs(rate - 1) > drift]
        if self.record_documented_limits and read.level == "lease" and beyond:
            return (f"{', '.join(beyond)}, beyond the {drift:.0%} drift leases assume, so {read.node}'s lease "
                    "outlived the wait of the new leader")
        return None

    def _refuse(self, read: Read, error: str) -> None:
        read.outcome, read.why = "refused", error
        for callback in self.on_read:
            callback(read)

    def committed_value(self, key: str, index: int):
        state: dict = {}
        for i in range(1, index + 1):
            record = self.checker.committed.get(i)
            if record is not None and record[1] is EntryType.COMMAND:
                apply_command(state, record[2])
        return state.get(key)
