"""A deterministic cluster of Raft cores over a simulated network and clock.

Theory of operation: the simulator is a discrete-event loop. Every pending
thing (a message in flight, a node's next timer, a client request, a fault)
sits in one heap ordered by (simulated ms, sequence number), so a seed fixes
the whole run. Each :class:`SimNode` plays the runtime's part of the core's
contract: it makes persistence effects "durable" (copies them into
``durable``) before its messages enter the network, applies committed entries
to a dict state machine, takes and installs snapshots. A crash throws away
everything but ``durable``; a crash *during* a step also throws away that
step's effects, which is what losing unsynced writes looks like to Raft.

Every step is reported to an observer (the invariant checker) with the node,
the event, the effects and the node's log before the step.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import Entry, EntryType, InstallSnapshot, SnapshotMeta
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

from .invariants import Violation

SEGMENT_ENTRIES = 16

SIM_CONFIG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50,
                        commit_timeout=5, max_append_entries=8, max_inflight=2,
                        snapshot_threshold=40, snapshot_interval=300, trailing_logs=10,
                        snapshot_log_limit=100)


def encode_command(key: str, value: str | None) -> bytes:
    # the simulator's own tiny command format keeps it free of msgpack
    return (f"set\x00{key}\x00{value}" if value is not None else f"del\x00{key}").encode()


def apply_command(state: dict, data: bytes) -> None:
    parts = data.decode().split("\x00")
    if parts[0] == "set":
        state[parts[1]] = parts[2]
    else:
        state.pop(parts[1], None)


@dataclass
class Durable:
    """What survives a crash: the fsync'd hard state, log and snapshot."""
    term: int = 0
    voted_for: str | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    snapshot: SnapshotMeta | None = None
    snapshot_state: dict = field(default_factory=dict)
    commit_hint: int = 0


class SimNode:
    def __init__(self, node_id: str, cluster: "SimCluster") -> None:
        self.id = node_id
        self.address = f"{node_id}:7000"
        self.cluster = cluster
        self.durable = Durable()
        self.alive = False
        self.incarnation = 0
        self.raft: RaftNode | None = None
        self.state: dict = {}
        self.applied = 0

    def boot(self, now: int) -> list:
        d = self.durable
        entries = tuple(d.entries[i] for i in sorted(d.entries))
        self.raft = RaftNode(self.id, self.address, self.cluster.config,
                             PersistentState(d.term, d.voted_for, d.commit_hint, d.snapshot, entries),
                             random.Random(self.cluster.rng.random()), now)
        self.state = dict(d.snapshot_state)
        self.applied = d.snapshot.index if d.snapshot else 0
        self.alive = True
        self.incarnation += 1
        return self.raft.start()


class SimCluster:
    def __init__(self, seed: int, node_ids: list[str], config: RaftConfig = SIM_CONFIG,
                 observer=None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config
        self.now = 0
        self.nodes: dict[str, SimNode] = {i: SimNode(i, self) for i in node_ids}
        self._queue: list = []
        self._seq = 0
        self._tick_gen: dict[str, int] = {}
        self.observer = observer
        self.steps = 0
        # network faults
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.min_delay = 1
        self.max_delay = 5
        self.blocked: set[tuple[str, str]] = set()
        self.crash_mid_step_rate = 0.0
        self.on_effects = []   # callbacks(node, effects) after a step (clients)
        self.trace = None      # callable(kind, text) for human-readable traces

    # ------------------------------------------------------------ scheduling

    def schedule(self, at: int, kind: str, payload) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if self.trace:
            self.trace("event", f"Start {node_id}")
        effects = node.boot(self.now)
        self._after_step(node, None, effects, None)

    def bootstrap(self, voters: list[str]) -> None:
        config = Configuration(tuple(Server(i, self.nodes[i].address) for i in voters))
        for i in voters:
            self.step(i, ev.Bootstrap(config))

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        if self.trace:
            self.trace("event", f"Crash {node_id}")
        node.alive = False
        node.raft = None
        self._tick_gen[node_id] = self._tick_gen.get(node_id, 0) + 1

    def run_until(self, t: int, stop=None) -> bool:
        """Process events up to simulated time t; True if ``stop()`` fired."""
        while self._queue and self._queue[0][0] <= t:
            at, _, kind, payload = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            self._dispatch(kind, payload)
            if stop is not None and stop():
                return True
        self.now = max(self.now, t)
        return False

    def _dispatch(self, kind: str, payload) -> None:
        if kind == "tick":
            node_id, gen = payload
            if self._tick_gen.get(node_id) == gen and self.nodes[node_id].alive:
                self.step(node_id, ev.Tick(self.now), label="Timeout")
        elif kind == "deliver":
            src, dst, msg = payload
            if (src, dst) in self.blocked or not self.nodes[dst].alive:
                if isinstance(msg, InstallSnapshot) and self.nodes[src].alive:
                    self.step(src, ev.SnapshotSendFailed(dst))
                return
            self.step(dst, ev.Receive(src, msg), label=f"Receive {type(msg).__name__} {src}->{dst}")
        elif kind == "snapshot_taken":
            node_id, incarnation, meta = payload
            node = self.nodes[node_id]
            if node.alive and node.incarnation == incarnation:
                self.step(node_id, ev.SnapshotTaken(meta))
        elif kind == "call":
            payload()

    # ------------------------------------------------------------ stepping

    def step(self, node_id: str, event, label: str | None = None) -> list:
        node = self.nodes[node_id]
        if not node.alive:
            return []
        log_before = list(node.raft.log._entries) if isinstance(event, ev.Receive) else None
        base_before = node.raft.log.base_index
        commit_before = node.raft.commit_index
        effects = node.raft.step(event, self.now)
        self.steps += 1
        if self.trace and label is not None and (not label.startswith("Timeout") or effects):
            self.trace("event", label)
        if self.crash_mid_step_rate and self.rng.random() < self.crash_mid_step_rate:
            # the step ran but nothing it asked for reached the disk or the wire
            self.crash(node_id)
            return []
        self._after_step(node, event, effects, (log_before, base_before, commit_before))
        return effects

    def _after_step(self, node: SimNode, event, effects: list, before) -> None:
        raft = node.raft
        durable = node.durable
        for effect in effects:
            t = type(effect)
            if t is fx.PersistHardState:
                durable.term, durable.voted_for = effect.term, effect.voted_for
            elif t is fx.AppendToLog:
                # as the real log store does: an append continues the stored
                # log; only an empty store may start anywhere
                first = effect.entries[0].index
                if durable.entries and first != max(durable.entries) + 1:
                    raise Violation("Storage", f"{node.id} appends at {first} to a stored log "
                                    f"ending at {max(durable.entries)}")
                for e in effect.entries:
                    durable.entries[e.index] = e
            elif t is fx.TruncateLog:
                for i in [i for i in durable.entries if i >= effect.from_index]:
                    del durable.entries[i]
            elif t is fx.CompactLog:
                # as the real log store does: whole segments go (here 16
                # entries each), so entries below the snapshot may remain;
                # compacting through the last entry empties the store
                through = effect.through_index
                if durable.entries and through < max(durable.entries):
                    through -= through % SEGMENT_ENTRIES
                for i in [i for i in durable.entries if i <= through]:
                    del durable.entries[i]
            elif t is fx.RestoreSnapshot:
                durable.snapshot = effect.meta
                durable.snapshot_state = dict(effect.data)
                node.state = dict(effect.data)
                node.applied = effect.meta.index
                durable.commit_hint = max(durable.commit_hint, effect.meta.index)
        if self.observer is not None:
            self.observer.check_step(self, node, event, effects, before)
        for effect in effects:
            t = type(effect)
            if t is fx.Send:
                self._send(node, effect)
            elif t is fx.Apply:
                for e in effect.entries:
                    if e.type is EntryType.COMMAND:
                        apply_command(node.state, e.data)
                    node.applied = e.index
                durable.commit_hint = node.applied
            elif t is fx.TakeSnapshot:
                meta = SnapshotMeta(effect.meta.index, effect.meta.term, effect.meta.configuration,
                                    effect.meta.configuration_index,
                                    id=f"{effect.meta.term}-{effect.meta.index}-{self.now}")
                if self.observer is not None:
                    self.observer.check_snapshot(self, node, meta)
                durable.snapshot = meta
                durable.snapshot_state = dict(node.state)
                self.schedule(self.now + 1 + self.rng.randrange(5), "snapshot_taken",
                              (node.id, node.incarnation, meta))
            elif t is fx.Log and self.trace:
                self.trace("log", (node.id, effect))
        for callback in self.on_effects:
            callback(node, effects)
        if node.alive and node.raft is raft:
            gen = self._tick_gen.get(node.id, 0) + 1
            self._tick_gen[node.id] = gen
            self.schedule(max(raft.next_deadline(), self.now + 1), "tick", (node.id, gen))

    def _send(self, node: SimNode, effect: fx.Send) -> None:
        msg = effect.message
        if isinstance(msg, InstallSnapshot):
            msg = InstallSnapshot(msg.term, msg.leader_id, msg.leader_address, msg.meta,
                                  dict(node.durable.snapshot_state))
        dst = effect.to
        if dst not in self.nodes or (node.id, dst) in self.blocked:
            if isinstance(msg, InstallSnapshot):
                self.schedule(self.now + 1, "call", lambda n=node.id, d=dst: self._snapshot_failed(n, d))
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            return
        copies = 2 if self.dup_rate and self.rng.random() < self.dup_rate else 1
        for _ in range(copies):
            delay = self.min_delay + self.rng.randrange(self.max_delay - self.min_delay + 1)
            self.schedule(self.now + delay, "deliver", (node.id, dst, msg))

    def _snapshot_failed(self, node_id: str, peer_id: str) -> None:
        if self.nodes[node_id].alive:
            self.step(node_id, ev.SnapshotSendFailed(peer_id))

    # ------------------------------------------------------------ queries

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def leader(self) -> SimNode | None:
        leaders = [n for n in self.live() if n.raft.is_leader]
        if not leaders:
            return None
        return max(leaders, key=lambda n: n.raft.current_term)

    def describe_node(self, node: SimNode) -> str:
        if not node.alive:
            return f"{node.id}: down"
        r = node.raft
        terms = " ".join(str(e.term) for e in r.log.slice(r.log.first_index, r.log.last_index))
        base = f"[{r.log.base_index}@{r.log.base_term}] " if r.log.base_index else ""
        return (f"{node.id}: {r.role:<9} term={r.current_term} commit={r.commit_index} "
                f"applied={r.last_applied} last={r.log.last_index} log={base}{terms}")
