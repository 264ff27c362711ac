"""A deterministic cluster of Raft cores over a simulated network and clock.

Theory of operation: the simulator is a discrete-event loop. Every pending
thing (a message in flight, a node's next timer, a client request, a fault)
sits in one heap ordered by (simulated ms, sequence number), so a seed fixes
the whole run.

Each :class:`SimNode` carries out its core's effects with the live node's own
:class:`~raftkv.node.executor.EffectExecutor`, so the simulator tests the code
that runs: the same order of persist, early AppendEntries, send, apply and
hand-over. Only the executor's surroundings are simulated: the disk
(:class:`~raftkv.sim.storage.Durable`), the network
(:class:`~raftkv.sim.network.SimNetwork`), the state machine (a dict) and the
host, which is the SimNode itself (it takes snapshots, writes the trace, and
passes applied entries and request outcomes on to the simulated clients,
``on_effects``, the moment the executor hands them over). A crash throws away
everything but ``durable``; a crash *during* a step also throws away that
step's effects before the executor sees them, which is what losing unsynced
writes looks like to Raft.

A step is carried out as ``Node._carry_out`` in ``raftkv/node/runtime.py``
does it: ``prepare``, ``send_early`` (leader as the host last heard its
role), ``persist`` (inline here), ``finish``. Every step is reported to an
observer (the invariant checker) once its effects are durable and before
anything else is carried out, with the node, the event, the effects and the
node's log before the step; the observer also sees each message as it enters
the network and each batch of entries as it is applied, to check them
against what the node has made durable.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence

from raftkv.node.executor import EffectExecutor
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import Entry, InstallSnapshot, Message, SnapshotMeta
from raftkv.raft.node import LEADER, PersistentState, RaftConfig, RaftNode

from .network import SimNetwork
from .state_machine import DictStateMachine
from .storage import Durable

SIM_CONFIG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50,
                        commit_timeout=5, max_append_entries=8, max_inflight=2,
                        snapshot_threshold=40, snapshot_interval=300, trailing_logs=10,
                        snapshot_log_limit=100, read_lease=50, lease_margin=1)


class SimNode:
    """One simulated server: its durable store, and while it is up its core,
    state machine and executor. It is its executor's host."""

    def __init__(self, node_id: str, cluster: "SimCluster") -> None:
        self.id = node_id
        self.address = f"{node_id}:7000"
        self.cluster = cluster
        self.volumes = 1
        self.durable = Durable(node_id, volume=f"{node_id}.v1")
        self.alive = False
        self.incarnation = 0
        self.raft: RaftNode | None = None
        self.state_machine = DictStateMachine()
        self.executor: EffectExecutor | None = None
        self.role = "Follower"  # as the host last heard it, like the live node's

    @property
    def state(self) -> dict:
        return self.state_machine.state

    @property
    def applied_index(self) -> int:
        return self.state_machine.applied

    def boot(self, now: int) -> list:
        d = self.durable
        entries = tuple(d.entries[i] for i in sorted(d.entries))
        state = PersistentState(d.term, d.voted_for, d.commit_hint, d.snapshot, entries, d.volume)
        seed = self.cluster.rng.random()
        self.raft = RaftNode(self.id, self.address, self.cluster.config, state, random.Random(seed), now)
        recorder = self.cluster.recorders.get(self.id)
        if recorder is not None:
            recorder.start(self.id, self.address, self.cluster.config, state, seed, now)
        self.state_machine = DictStateMachine(d.snapshot_state, d.snapshot.index if d.snapshot else 0, self.id)
        d.state_machine = self.state_machine
        self.executor = EffectExecutor(d, SimNetwork(self.cluster, self), self.state_machine, self)
        self.role = "Follower"
        self.alive = True
        self.incarnation += 1
        return self.raft.start()

    def wipe(self) -> None:
        """Lose the disk: a new, empty volume with an identity of its own."""
        self.volumes += 1
        self.durable = Durable(self.id, volume=f"{self.id}.v{self.volumes}")

    # -- the executor's host

    def log(self, effect: fx.Log) -> None:
        if self.cluster.trace:
            self.cluster.trace("log", (self.id, effect))

    def sent(self, to: str, message: Message) -> None:
        if self.cluster.trace:
            self.cluster.trace("send", (self.id, to, message))

    def trace_executor(self, text: str) -> None:
        self.cluster.trace("executor", (self.id, text))

    def applied(self, entries: Sequence[Entry], results: list) -> None:
        cluster = self.cluster
        if cluster.observer is not None:
            cluster.observer.check_applied(cluster, self, entries)
        self.durable.commit_hint = entries[-1].index
        self._hand_to_clients(fx.Apply(tuple(entries)))

    def resolve(self, effect) -> None:
        self._hand_to_clients(effect)

    def _hand_to_clients(self, effect) -> None:
        # at the moment the executor hands it over, as a live node's request
        # futures see it: a read served here sees the state machine as it is
        for callback in self.cluster.on_effects:
            callback(self, [effect])

    def state_changed(self, effect: fx.StateChanged) -> None:
        self.role = effect.role

    def configuration_changed(self, effect: fx.ConfigurationChanged) -> None:
        pass

    def compacted(self) -> None:
        pass

    def take_snapshot(self, meta: SnapshotMeta) -> None:
        cluster = self.cluster
        meta = SnapshotMeta(meta.index, meta.term, meta.configuration, meta.configuration_index,
                            id=f"{meta.term}-{meta.index}-{cluster.now}")
        if cluster.observer is not None:
            cluster.observer.check_snapshot(cluster, self, meta)
        self.durable.store_snapshot(meta, self.state)
        cluster.schedule(cluster.now + 1 + cluster.rng.randrange(5), "snapshot_taken",
                         (self.id, self.incarnation, meta))


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
        # each node's clock rate against simulated time (1.0: exact); a
        # node's core sees int(now * rate), as a monotonic clock that drifts
        self.clock_rates: dict[str, float] = {}
        self._clock_bases: dict[str, tuple[int, int]] = {}   # node -> (sim time, its clock then)
        self.fifo_links = False   # True: no message overtakes an earlier one on its link
        self.link_clock: dict[tuple[str, str], int] = {}   # (from, to) -> arrival time of its latest message
        self.dropped_messages: set[int] = set()   # ids of messages in flight to lose
        self._message_seq = 0
        # callable(message id, from, to, message, arrives at ms or None, fate)
        # with fate "sent", "cut" (the link is cut), "dropped" (random or
        # dropped_messages), "lost" (it arrived at a node that is down or
        # cut off) or "delivered"
        self.on_message = None
        self.last_sent: dict[tuple[str, str, str], object] = {}  # (src, dst, type name) -> message (redeliver)
        # callbacks(node, [effect]) for the simulated clients, as the
        # executor hands the host applied entries (fx.Apply) and request
        # outcomes (Proposed, Rejected, Completed, ReadReady)
        self.on_effects = []
        self.after_step = []   # callbacks(node, effects) after each step (the tracers)
        # callbacks(node, ready) once a leader's early AppendEntries left and
        # before the step's writes are made durable (the learning view's
        # "only in memory" moment)
        self.before_persist = []
        self.step_observers = []   # callbacks(node, event, effects) once a step is carried out (None: a start)
        # callable(kind, payload) for human-readable traces; kinds: "event"
        # (label), "log" (node id, fx.Log), "send" (node id, to, message),
        # "executor" (node id, what the executor made durable or applied)
        self.trace = None
        # node id -> raftkv.node.trace.TraceRecorder: that node's steps, for raftkv replay
        self.recorders: dict = {}

    # ------------------------------------------------------------ scheduling

    def clock(self, node_id: str) -> int:
        """What ``node_id``'s monotonic clock reads now (ms)."""
        rate = self.clock_rates.get(node_id)
        if rate is None:
            return self.now
        t0, local0 = self._clock_bases.get(node_id, (0, 0))
        return local0 + int((self.now - t0) * rate)

    def sim_time(self, node_id: str, local: int) -> int:
        """The simulated time at which ``node_id``'s clock reads ``local``."""
        rate = self.clock_rates.get(node_id)
        if rate is None:
            return local
        t0, local0 = self._clock_bases.get(node_id, (0, 0))
        return t0 - int(-(local - local0) // rate)

    def set_clock_rate(self, node_id: str, rate: float) -> None:
        """From now on ``node_id``'s clock runs at ``rate``, going on from what it reads now."""
        self._clock_bases[node_id] = (self.now, self.clock(node_id))
        self.clock_rates[node_id] = rate

    def schedule(self, at: int, kind: str, payload) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def new_message_id(self) -> int:
        self._message_seq += 1
        return self._message_seq

    def message_fate(self, message_id: int, src: str, dst: str, message, arrives: int | None, fate: str) -> None:
        if fate == "sent":
            self.last_sent[(src, dst, type(message).__name__)] = message
        if self.on_message is not None:
            self.on_message(message_id, src, dst, message, arrives, fate)

    def redeliver(self, src: str, dst: str, kind: str) -> None:
        """The last ``kind`` message sent from src to dst arrives once more,
        now: a duplicate the network held back (it may overtake anything)."""
        message = self.last_sent.get((src, dst, kind))
        if message is None:
            raise ValueError(f"redeliver: {src} sent no {kind} to {dst}")
        message_id = self.new_message_id()
        self.message_fate(message_id, src, dst, message, self.now + 1, "sent")
        self.schedule(self.now + 1, "deliver", (src, dst, message, message_id))

    def drop_message(self, message_id: int) -> None:
        """Lose one message in flight: it never arrives."""
        self.dropped_messages.add(message_id)

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if self.trace:
            self.trace("event", f"Start {node_id}")
        effects = node.boot(self.clock(node_id))
        self._record(node, None, effects)
        self._carry_out(node, None, effects, None)
        for observer in self.step_observers:
            observer(node, None, effects)

    def bootstrap(self, voters: list[str]) -> None:
        # every voter is recorded with its volume, as a lone bootstrapping node records its own
        config = Configuration(tuple(Server(i, self.nodes[i].address, Suffrage.VOTER, self.nodes[i].durable.volume)
                                     for i in voters))
        for i in voters:
            self.step(i, ev.Bootstrap(config), label=f"Bootstrap {i} voters={','.join(voters)}")

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        if self.trace:
            self.trace("event", f"Crash {node_id}")
        node.alive = False
        node.raft = None
        self._tick_gen[node_id] = self._tick_gen.get(node_id, 0) + 1

    def wipe(self, node_id: str) -> None:
        """Crash a node and lose its disk; it comes back empty when started."""
        self.crash(node_id)
        if self.trace:
            self.trace("event", f"Wipe {node_id}")
        self.nodes[node_id].wipe()

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
                self.step(node_id, ev.Tick(self.clock(node_id)), label="Timeout")
        elif kind == "deliver":
            src, dst, msg, message_id = payload
            dropped = message_id in self.dropped_messages
            if dropped or (src, dst) in self.blocked or not self.nodes[dst].alive:
                self.message_fate(message_id, src, dst, msg, None, "dropped" if dropped else "lost")
                if isinstance(msg, InstallSnapshot) and self.nodes[src].alive:
                    self.step(src, ev.SnapshotSendFailed(dst))
                return
            self.message_fate(message_id, src, dst, msg, None, "delivered")
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
        effects = node.raft.step(event, self.clock(node_id))
        self.steps += 1
        if self.recorders:
            self._record(node, event, effects)
        if self.trace and label is not None and (not label.startswith("Timeout") or effects):
            self.trace("event", label)
        if self.crash_mid_step_rate and self.rng.random() < self.crash_mid_step_rate:
            # the step ran but nothing it asked for reached the disk or the wire
            self.crash(node_id)
            return []
        self._carry_out(node, event, effects, (log_before, base_before, commit_before))
        if node.alive:
            for observer in self.step_observers:
                observer(node, event, effects)
        return effects

    def _record(self, node: SimNode, event, effects: list) -> None:
        recorder = self.recorders.get(node.id)
        if recorder is not None:
            recorder.step(event, None if event is None else self.clock(node.id), effects, node.raft.status())
            recorder.flush()  # each simulated step is carried out on its own

    def _carry_out(self, node: SimNode, event, effects: list, before) -> None:
        """The live node's order (raftkv/node/runtime.py), run inline, with
        the invariant checker between durability and the rest."""
        raft = node.raft
        executor = node.executor
        executor.trace = node.trace_executor if self.trace else None
        ready = executor.prepare(effects)
        executor.send_early(ready, node.role == LEADER)
        for callback in self.before_persist:
            callback(node, ready)
        executor.persist(ready)
        if self.observer is not None:
            self.observer.check_step(self, node, event, effects, before)
        executor.finish(ready)
        for callback in self.after_step:
            callback(node, effects)
        if node.alive and node.raft is raft:
            gen = self._tick_gen.get(node.id, 0) + 1
            self._tick_gen[node.id] = gen
            self.schedule(max(self.sim_time(node.id, raft.next_deadline()), self.now + 1), "tick", (node.id, gen))

    def snapshot_send_failed(self, node_id: str, peer_id: str) -> None:
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
