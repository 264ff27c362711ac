"""Raft's safety properties, checked after every simulated step.

Theory of operation: the checker keeps a global history built from what the
nodes do: which node led which term, which entry was committed (applied) at
each index, which client writes were acknowledged. After each step it checks
the properties of Raft §5.2-5.4 and Fig. 3 against that history and the live
nodes' logs; the first breach raises :class:`Violation`.

* Election Safety: at most one leader per term.
* Log Matching: two logs holding an entry with the same index and term are
  identical up to it.
* Leader Completeness: a new leader holds every entry committed before it.
* State Machine Safety: no two nodes apply different entries at an index.
* Monotonicity: commit and applied indexes never go backwards (within one
  incarnation of a node); applies are contiguous.
* Committed entries are never truncated.
* Linearizable reads: a ReadIndex answer covers every write acknowledged
  before the read was asked (checked by the client model via ``check_read``).

The effect contract, as the node's executor carries it out, is checked
against each node's durable store at the moment something leaves it:

* Persist before send (``check_send``, as a message enters the network): a
  message never speaks for a term, a vote or log entries its sender has not
  made durable. A pre-vote request is the one exception (it names a term the
  candidate has not entered); a leader's AppendEntries may carry entries it is
  still writing, but its term is durable.
* Persist before apply (``check_applied``, as entries reach the state
  machine): a node applies only entries its durable store covers.
"""

from __future__ import annotations

from raftkv.raft import effects as fx
from raftkv.raft.messages import AppendEntriesResponse, InstallSnapshotResponse, RequestVote, RequestVoteResponse
from raftkv.raft.node import LEADER


class Violation(Exception):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class InvariantChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, tuple] = {}     # index -> (term, type, data)
        self.max_committed = 0
        self.indexes: dict[tuple[str, int], tuple[int, int]] = {}  # (node, incarnation) -> (commit, applied)

    def check_step(self, cluster, node, event, effects, before) -> None:
        raft = node.raft
        installed = next((e.meta.index for e in effects if type(e) is fx.RestoreSnapshot), 0)
        for effect in effects:
            t = type(effect)
            if t is fx.StateChanged and effect.role == LEADER:
                self._check_election(node.id, effect.term)
                self._check_leader_completeness(node)
            elif t is fx.TruncateLog and before is not None and before[0] is not None:
                self._check_truncate(node, effect.from_index, before, installed)
            elif t is fx.RestoreSnapshot:
                self._check_snapshot_install(node, effect.meta)
        key = (node.id, node.incarnation)
        commit, applied = raft.commit_index, raft.last_applied
        prev = self.indexes.get(key)
        if prev is not None and (commit < prev[0] or applied < prev[1]):
            raise Violation("Monotonic indexes",
                            f"{node.id} commit {prev[0]}->{commit} applied {prev[1]}->{applied}")
        self.indexes[key] = (commit, applied)
        if raft.last_applied != raft.commit_index:
            raise Violation("Apply at once", f"{node.id} commit={commit} applied={applied}")
        if any(type(e) in (fx.AppendToLog, fx.TruncateLog, fx.RestoreSnapshot) for e in effects):
            self._check_log_matching(cluster, node)

    def _check_election(self, node_id: str, term: int) -> None:
        holder = self.leaders.get(term)
        if holder is not None and holder != node_id:
            raise Violation("Election Safety", f"term {term} has two leaders: {holder} and {node_id}")
        self.leaders[term] = node_id

    def _check_leader_completeness(self, node) -> None:
        log = node.raft.log
        for index, (term, _, _) in self.committed.items():
            if index <= log.base_index:
                continue
            ours = log.term_at(index)
            if ours != term:
                raise Violation("Leader Completeness",
                                f"leader {node.id} of term {node.raft.current_term} has term {ours} "
                                f"at committed index {index} (committed term {term})")

    def _check_apply(self, node, entries) -> None:
        for e in entries:
            record = (e.term, e.type, e.data)
            seen = self.committed.get(e.index)
            if seen is None:
                self.committed[e.index] = record
                self.max_committed = max(self.max_committed, e.index)
            elif seen != record:
                raise Violation("State Machine Safety",
                                f"{node.id} applied term {e.term} at index {e.index}, "
                                f"another node applied term {seen[0]}")

    def _check_truncate(self, node, from_index: int, before, installed: int) -> None:
        """Entries a snapshot install discards up to its index are covered by
        the snapshot; anything else committed must survive."""
        log_before, base_before, commit_before = before
        if from_index <= commit_before and not installed:
            raise Violation("Committed entries never truncated",
                            f"{node.id} truncated from {from_index} with commit index {commit_before}")
        for offset, e in enumerate(log_before):
            index = base_before + 1 + offset
            if index < from_index or index <= installed:
                continue
            seen = self.committed.get(index)
            if seen is not None and seen == (e.term, e.type, e.data):
                raise Violation("Committed entries never truncated",
                                f"{node.id} dropped committed entry {index} (term {e.term})")

    def _check_snapshot_install(self, node, meta) -> None:
        seen = self.committed.get(meta.index)
        if seen is not None and seen[0] != meta.term:
            raise Violation("Snapshot consistency",
                            f"{node.id} installed snapshot {meta.index}@{meta.term}, committed term {seen[0]}")

    def check_send(self, cluster, node, to: str, msg) -> None:
        durable = node.durable
        t = type(msg)
        if t is RequestVote and msg.pre_vote:
            return
        if msg.term > durable.term:
            raise Violation("Persist before send",
                            f"{node.id} sent {t.__name__} of term {msg.term} to {to} "
                            f"with term {durable.term} durable")
        if msg.term < durable.term:
            return  # an answer in an older term (the node moved on since): nothing to vouch for
        if t is RequestVoteResponse and msg.granted and not msg.pre_vote and durable.voted_for != to:
            raise Violation("Persist before send",
                            f"{node.id} granted its vote in term {msg.term} to {to} "
                            f"with vote {durable.voted_for or '-'} durable")
        if t is RequestVote and durable.voted_for != node.id:
            raise Violation("Persist before send",
                            f"{node.id} asked {to} for a vote in term {msg.term} "
                            f"with vote {durable.voted_for or '-'} durable")
        if t is AppendEntriesResponse and msg.success and not msg.heartbeat:
            self._check_durable_through(node, msg.match_index, f"acknowledged {msg.match_index} to {to}")
        if t is InstallSnapshotResponse and msg.success:
            self._check_durable_through(node, msg.last_index,
                                        f"acknowledged a snapshot through {msg.last_index} to {to}")

    def check_applied(self, cluster, node, entries) -> None:
        """Entries the executor applied, in order (the state machine checks
        that they continue what it applied before)."""
        durable = node.durable
        last = entries[-1].index
        if last > durable.last_index:
            raise Violation("Persist before apply",
                            f"{node.id} applied through {last} with its store ending at {durable.last_index}")
        self._check_apply(node, entries)

    def _check_durable_through(self, node, index: int, what: str) -> None:
        durable = node.durable
        if index > durable.last_index:
            raise Violation("Persist before send",
                            f"{node.id} {what} with its store ending at {durable.last_index}")
        stored = durable.entries.get(index)
        ours = node.raft.log.term_at(index)
        if stored is not None and ours is not None and stored.term != ours:
            raise Violation("Persist before send",
                            f"{node.id} {what}: stored term {stored.term} at {index}, log term {ours}")

    def check_snapshot(self, cluster, node, meta) -> None:
        if node.applied_index != meta.index:
            raise Violation("Snapshot consistency",
                            f"{node.id} asked to snapshot at {meta.index} with applied {node.applied_index}")

    def _check_log_matching(self, cluster, node) -> None:
        mine = node.raft.log
        for other in cluster.live():
            if other is node:
                continue
            theirs = other.raft.log
            lo = max(mine.first_index, theirs.first_index)
            hi = min(mine.last_index, theirs.last_index)
            top = None
            for i in range(hi, lo - 1, -1):
                if mine.term_at(i) == theirs.term_at(i):
                    top = i
                    break
            if top is None:
                continue
            for i in range(lo, top + 1):
                if mine.entry(i) != theirs.entry(i):
                    raise Violation("Log Matching",
                                    f"{node.id} and {other.id} agree at {top} (term {mine.term_at(top)}) "
                                    f"but differ at {i}")

    def check_read(self, node_id: str, read_index: int, acked_before: int, value, expected) -> None:
        if read_index < acked_before:
            raise Violation("Linearizable read",
                            f"{node_id} answered a read at index {read_index} although index "
                            f"{acked_before} was acknowledged before the read began")
        if value != expected:
            raise Violation("Linearizable read",
                            f"{node_id} read {value!r}, the committed log says {expected!r}")
