"""A simulated cluster a learner steers, rewinds and forks: the learning page's simulator.

Theory of operation: a :class:`World` is a list of branches; a branch is a list
of learner actions (crash n2, drop message 41, write x=1) and the frames they
led to. A frame is one thing the page can show: a step of one node's Raft core
(what it received, what it logged and sent, why, and every server's state
after it), or a learner's action.

Everything runs on :class:`~raftkv.sim.cluster.SimCluster`: the real core and
the real effect executor over a simulated network and clock, from a fixed
seed. So a branch is fixed by its seed and its actions, each tagged with the
number of frames the branch had when it was taken: replaying them rebuilds
any moment exactly. Acting at the end of the branch just carries on. Acting
at an earlier frame (the page's time slider) forks: a new branch keeps the
old one's frames up to there, replays the actions before that point, takes
the new action and goes on from it. The old branch stays, and the page can
return to it (:meth:`World.switch`).

Frames are made as the page asks for them (:meth:`World.frames`), up to
``MAX_FRAMES`` a branch. A core step makes at most one frame, and a frame
is kept for every step that did anything or changed what the page draws, so
counting frames while replaying stops exactly where the learner acted.

The invariant checker of the fuzz tests watches every step, so whatever the
learner does, a broken safety property would stop the world with the
violation as its last frame instead of teaching something false.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace

from raftkv.observability.hclog import render_line
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.config import RaftConfig
from raftkv.raft.configuration import ConfigCommand
from raftkv.raft.messages import EntryType, TimeoutNow
from raftkv.sim.cluster import SimCluster
from raftkv.sim.invariants import InvariantChecker, Violation
from raftkv.sim.state_machine import encode_command

from .frames import Frames
from .narrate import narrate, narrate_fsync
from .picture import LogShape, down_view, event_view, message_view, node_view, step_label

__all__ = ["LEARN_CONFIG", "MAX_FRAMES", "VERBS", "Action", "ActionError", "Spec", "World", "random_seed"]

# Slow enough to watch: a heartbeat every 100 ms, an election timer of 1-2 s,
# a message 15-30 ms on the wire, four entries to an AppendEntries so that
# backtracking and pipelining take a few round trips.
LEARN_CONFIG = RaftConfig(heartbeat_timeout=1000, election_timeout=1000, leader_lease_timeout=500,
                          commit_timeout=50, max_append_entries=4, max_inflight=2,
                          snapshot_threshold=10 ** 6, snapshot_interval=10 ** 9, trailing_logs=4,
                          snapshot_log_limit=10 ** 6)
MIN_DELAY_MS, MAX_DELAY_MS = 15, 30
MAX_FRAMES = 20_000         # of one branch
MAX_WORLD_FRAMES = 40_000   # made in one world, over all its branches (about 35 MB with 7 servers)
MAX_BRANCHES = 64
CLIENTS_SHOWN = 8

MAX_LOAD = 2000   # writes one "load" action proposes at once
VERBS = ("crash", "restart", "isolate", "heal", "block", "unblock", "timeout", "campaign", "drop", "write", "load",
         "read", "transfer", "snapshot", "add", "promote", "remove")


class ActionError(ValueError):
    """An action that cannot be taken (an unknown node, a message no longer in flight)."""


@dataclass(frozen=True)
class Spec:
    """How a world begins: its servers, which of them are voters from the
    start (the rest are spares, down and empty until a learner adds them),
    its seed, its config."""
    nodes: tuple[str, ...] = ("n1", "n2", "n3")
    voters: tuple[str, ...] = ("n1", "n2", "n3")
    seed: int = 1
    config: RaftConfig = LEARN_CONFIG
    pre_vote: bool = True

    def raft_config(self) -> RaftConfig:
        return replace(self.config, pre_vote=self.pre_vote)


@dataclass(frozen=True)
class Action:
    at: int             # the branch's frame count when it was taken
    verb: str
    node: str | None = None
    key: str | None = None
    value: str | None = None
    message: int | None = None
    to: str | None = None   # the other end of a link (block, unblock)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Branch:
    id: int
    parent: int | None
    forked_at: int
    actions: list[Action] = field(default_factory=list)
    frames: Frames = field(default_factory=Frames)
    ended: str | None = None   # why no more frames come (the cap, a violation)

    def summary(self) -> dict:
        return {"id": self.id, "parent": self.parent, "forked_at": self.forked_at, "frames": len(self.frames),
                "actions": [a.to_dict() for a in self.actions], "ended": self.ended}


class _Cluster(SimCluster):
    """A SimCluster that reports every core step, with its event, to the run."""

    def __init__(self, run: "_Run", spec: Spec) -> None:
        super().__init__(spec.seed, list(spec.nodes), config=spec.raft_config(), observer=InvariantChecker())
        self.run = run
        self.min_delay, self.max_delay = MIN_DELAY_MS, MAX_DELAY_MS
        self.fifo_links = True   # as the live transport's one connection per peer

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        effects = node.boot(self.clock(node_id))
        self._record(node, None, effects)
        self._carry_out(node, None, effects, None)
        self.run.stepped(node, None, effects, None)

    def step(self, node_id: str, event, label: str | None = None) -> list:
        node = self.nodes[node_id]
        if not node.alive:
            return []
        before = self.run.view(node)
        self.run.stepping = (node, event, before)
        try:
            effects = super().step(node_id, event, label)
        finally:
            self.run.stepping = None
        if node.alive:
            self.run.stepped(node, event, effects, before)
        return effects


class _Run:
    """One branch being played: the cluster, the messages in flight, the
    clients' requests, and the frames made so far."""

    def __init__(self, spec: Spec, frames: Frames) -> None:
        self.spec = spec
        self.frames = frames
        self._watch(_Cluster(self, spec))
        for node_id in spec.voters:
            self.cluster.start(node_id)
        self.cluster.bootstrap(list(spec.voters))
        self.frames.bind(0, first_too=True)

    def _watch(self, cluster: SimCluster) -> None:
        """Draw ``cluster`` from now on (raftkv.learn.recording watches
        clusters built by others this way)."""
        self.cluster = cluster
        self.cluster.on_message = self._on_message
        self.cluster.on_effects.append(self._client_effects)
        self.cluster.before_persist.append(self._in_memory)
        self.stepping: tuple | None = None          # (node, event, view before) while a step is carried out
        self._fsync_through: int | None = None   # the stepping node's last index, after an "in memory" frame
        self.flight: dict[int, dict] = {}
        self._sent: list[int] = []
        self._delivered: int | None = None
        self._cut: list[dict] = []
        self._views: dict[str, dict] = {}
        self._logs: dict[str, dict] = {}
        self._timers: dict[str, tuple[int, int]] = {}   # node -> (deadline, started)
        self.requests: list[dict] = []
        self._request_ids = itertools.count(1)
        self._pending: dict[int, dict] = {}              # core request id -> client record
        for node_id in self.spec.nodes:
            self._views[node_id] = down_view(node_id)

    # -- what the page sees of a node

    def view(self, node, log_changed: bool = False, durable: int | None = None) -> dict:
        if not node.alive or node.raft is None:
            return self._down(node)
        raft = node.raft
        status = raft.status()
        log = self._logs.get(node.id)
        if log is None or log_changed:
            log = self._logs[node.id] = LogShape.of(raft.log).view()
        deadline = status.election_deadline
        known = self._timers.get(node.id)
        if known is None or known[0] != deadline:
            known = self._timers[node.id] = (deadline, self.cluster.now)
        return node_view(status, log, applied=node.applied_index, durable=durable, timer_start=known[1])

    def _down(self, node) -> dict:
        d = node.durable
        if not node.incarnation:
            return down_view(node.id)   # never started: a spare
        snapshot = d.snapshot
        shape = LogShape(snapshot.index if snapshot else 0, snapshot.term if snapshot else 0)
        shape.append(d.entries[i] for i in sorted(d.entries) if i > shape.base_index)
        return down_view(node.id, {"term": d.term, "vote": d.voted_for, "last": shape.last_index,
                                   "snapshot": [shape.base_index, shape.base_term], "log": shape.view()})

    # -- hooks

    def _on_message(self, message_id: int, src: str, dst: str, msg, arrives: int | None, fate: str) -> None:
        if fate == "sent":
            self.flight[message_id] = {"id": message_id, "from": src, "to": dst, "sent": self.cluster.now,
                                       "arrive": arrives, **message_view(msg)}
            self._sent.append(message_id)
        elif fate == "cut":
            self._cut.append({"id": message_id, "from": src, "to": dst, **message_view(msg)})
        else:
            self.flight.pop(message_id, None)
            if fate == "delivered":
                self._delivered = message_id

    def _client_effects(self, node, effects) -> None:
        for effect in effects:
            t = type(effect)
            if t is fx.Proposed:
                self._update(effect.request_id, index=effect.index, term=effect.term)
            elif t is fx.Apply:
                for entry in effect.entries:
                    for rid, rec in list(self._pending.items()):
                        if (rec["kind"] == "write" and rec["node"] == node.id and rec.get("index") == entry.index
                                and entry.type is EntryType.COMMAND):
                            ok = rec.get("term") == entry.term
                            self._update(rid, status="ok" if ok else "failed",
                                         detail=f"committed at {entry.index}" if ok else "overwritten", done=True)
            elif t is fx.ReadReady:
                rec = self._pending.get(effect.request_id)
                if rec is not None:
                    self._update(effect.request_id, status="ok", index=effect.index,
                                 value=node.state.get(rec["key"]), detail=f"read at index {effect.index}",
                                 done=True)
            elif t is fx.Rejected:
                hint = f"; leader is {effect.leader_id}" if effect.leader_id else ""
                self._update(effect.request_id, status="failed", detail=f"{effect.error}{hint}", done=True)

    def _update(self, request_id: int, done: bool = False, **changes) -> None:
        rec = self._pending.get(request_id)
        if rec is None:
            return
        new = {**rec, **changes, "t1": self.cluster.now} if done else {**rec, **changes}
        self.requests[self.requests.index(rec)] = new
        if done:
            del self._pending[request_id]
        else:
            self._pending[request_id] = new

    # -- frames

    def _in_memory(self, node, ready) -> None:
        """A step appended to the log: draw the moment its entries are in
        memory and not yet on disk (a leader's AppendEntries may have left
        already, thesis §10.2.1); :meth:`stepped` then draws the fsync."""
        appends = [e for e in ready.persist if type(e) is fx.AppendToLog and e.entries]
        if self.stepping is None or self.stepping[0] is not node or not appends:
            return
        _, event, before = self.stepping
        first = min(e.entries[0].index for e in appends)
        after = self.view(node, True, durable=min(node.durable.last_index, first - 1))
        self._views[node.id] = after
        self._fsync_through = node.raft.log.last_index
        self._step_frame(node, event, ready.effects, before, after, mid_step=True)

    def stepped(self, node, event, effects, before: dict | None) -> None:
        log_changed = event is None or any(type(e) in (fx.AppendToLog, fx.TruncateLog, fx.CompactLog,
                                                       fx.RestoreSnapshot) for e in effects)
        after = self.view(node, log_changed)
        if self._fsync_through is not None:
            through, self._fsync_through = self._fsync_through, None
            self._views[node.id] = after
            event = {"type": "Fsync", "through": through}
            self._frame(node.id, event, step_label(node.id, event),
                        narrate_fsync(node.id, node.raft.is_leader, through), [])
            return
        changed = after != self._views.get(node.id)
        self._views[node.id] = after
        if not effects and not changed and self._delivered is None:
            return
        self._step_frame(node, event, effects, before, after)

    def _step_frame(self, node, event, effects, before: dict | None, after: dict, mid_step: bool = False) -> None:
        label = step_label(node.id, event_view(event))
        sentences = narrate(node.id, event, effects, before, after, core=node.raft)
        logs = [render_line(None, e.level, e.logger, e.message, e.fields).rstrip()
                for e in effects if type(e) is fx.Log]
        self._frame(node.id, event_view(event), label, sentences, logs, mid_step)

    def acted(self, action: Action, label: str, sentences: list[dict]) -> None:
        for node_id, node in self.cluster.nodes.items():
            self._views[node_id] = self.view(node)
        self._frame(action.node, {"type": "Action", **action.to_dict()}, label, sentences, [])

    def _frame(self, node_id, event: dict, label: str, sentences: list[dict], logs: list[str],
               mid_step: bool = False) -> None:
        frame = {"i": len(self.frames), "t": self.cluster.now, "node": node_id, "event": event, "label": label,
                 "narration": sentences, "logs": logs, "sent": self._sent, "delivered": self._delivered,
                 "cut": self._cut, "nodes": [self._views[i] for i in self.spec.nodes],
                 "flight": sorted(self.flight.values(), key=lambda m: m["id"]),
                 "clients": self.requests[-CLIENTS_SHOWN:]}
        if mid_step:
            frame["mid_step"] = True
        self._sent, self._delivered, self._cut = [], None, []
        self.frames.append(frame)

    def advance(self) -> bool:
        """Carry out the next thing on the simulated clock; False if nothing is left."""
        cluster = self.cluster
        if not cluster._queue:
            return False
        start = len(self.frames)
        cluster.run_until(cluster._queue[0][0], stop=lambda: True)
        self.frames.bind(start)
        return True

    # -- actions

    def take(self, action: Action) -> None:
        start = len(self.frames)
        try:
            self._take(action)
        finally:
            self.frames.bind(start)

    def _take(self, action: Action) -> None:
        cluster, verb, n = self.cluster, action.verb, action.node
        if verb not in VERBS:
            raise ActionError(f"unknown action {verb!r}; one of {', '.join(VERBS)}")
        if verb != "drop" and verb != "heal" and n not in cluster.nodes:
            raise ActionError(f"no server {n!r}; servers are {', '.join(cluster.nodes)}")
        node = cluster.nodes.get(n) if n else None
        if verb == "crash":
            self._fail_requests(n, "the server crashed before answering: the outcome is unknown")
            cluster.crash(n)
            self._views[n] = self._down(node)
            self.acted(action, f"{n} crashes", [_said(
                f"{n} crashes. It loses what it held in memory: its commit index, its state machine, the "
                "messages it was about to send. Its term, its vote and its log are on disk.", "Figure 2")])
        elif verb == "restart":
            if node.alive:
                raise ActionError(f"{n} is running")
            cluster.start(n)
        elif verb == "isolate":
            for other in cluster.nodes:
                if other != n:
                    cluster.blocked.update({(n, other), (other, n)})
            self.acted(action, f"{n} is cut off", [_said(
                f"The network cuts {n} off: nothing it sends arrives, and nothing reaches it.", "§5.2")])
        elif verb == "heal":
            if n:
                cluster.blocked = {(a, b) for a, b in cluster.blocked if n not in (a, b)}
            else:
                cluster.blocked.clear()
            self.acted(action, f"{n or 'the network'} heals", [_said(
                f"The network heals{f' around {n}' if n else ''}: messages get through again.", "§5.2")])
        elif verb in ("block", "unblock"):
            if action.to not in cluster.nodes or action.to == n:
                raise ActionError(f"{verb} needs another server as 'to'")
            if verb == "block":
                cluster.blocked.add((n, action.to))
            else:
                cluster.blocked.discard((n, action.to))
            cut = verb == "block"
            self.acted(action, f"{n}->{action.to} {'cut' if cut else 'restored'}", [_said(
                f"The link from {n} to {action.to} is {'cut: what ' + n + ' sends there is lost' if cut else 'back'}"
                ".", "§5.2")])
        elif verb == "timeout":
            self._alive(node)
            raft = node.raft
            raft.election_deadline = cluster.now
            raft.last_leader_contact = -(10 ** 9)
            cluster.step(n, ev.Tick(cluster.clock(n)))
            if len(self.frames) == action.at:   # nothing happened: say so
                self.acted(action, f"{n}'s timer fires", [_said(
                    f"{n}'s timer fires, but as {raft.role.lower()} it has nothing to do.", "§5.2")])
        elif verb == "campaign":
            # as a leadership transfer's TimeoutNow: campaign now, past pre-vote and leader stickiness
            self._alive(node)
            cluster.step(n, ev.Receive(n, TimeoutNow(node.raft.current_term, n)))
        elif verb == "drop":
            if action.message not in self.flight:
                raise ActionError(f"message {action.message} is not in flight")
            msg = self.flight.pop(action.message)
            cluster.drop_message(action.message)
            self.acted(action, f"{msg['type']} {msg['from']}->{msg['to']} is lost", [_said(
                f"The {msg['label']} message from {msg['from']} to {msg['to']} is lost. Raft never counts on a "
                "message arriving: the sender tries again at its next heartbeat or timeout.", "§5.3")])
        elif verb in ("write", "read"):
            self._alive(node)
            rid = next(self._request_ids)
            rec = {"id": rid, "kind": verb, "node": n, "key": action.key or "x", "status": "pending", "t0": cluster.now}
            if verb == "write":
                rec["value"] = action.value or ""
            elif action.value == "lease":   # a read under the leader's read lease, if it holds one
                rec["lease"] = True
            self.requests.append(rec)
            self._pending[rid] = rec
            event = (ev.Propose(rid, encode_command(rec["key"], rec["value"])) if verb == "write"
                     else ev.ReadIndex(rid, lease=action.value == "lease"))
            cluster.step(n, event)
        elif verb == "load":
            # many writes at once, as a busy client would send them (one batch)
            self._alive(node)
            count = int(action.value or 0)
            if not 1 <= count <= MAX_LOAD:
                raise ActionError(f"load takes a count from 1 to {MAX_LOAD} as its value")
            key = action.key or "k"
            writes = tuple(ev.Propose(next(self._request_ids), encode_command(f"{key}{i}", str(i)))
                           for i in range(count))
            cluster.step(n, ev.ProposeBatch(writes))
        elif verb == "transfer":
            leader = cluster.leader()
            if leader is None:
                raise ActionError("there is no leader to hand over from")
            cluster.step(leader.id, ev.TransferLeadership(next(self._request_ids), n))
        elif verb == "snapshot":
            self._alive(node)
            cluster.step(n, ev.RequestSnapshot(next(self._request_ids)))
        elif verb in ("add", "promote", "remove"):
            leader = cluster.leader()
            if leader is None:
                raise ActionError("there is no leader to change the membership")
            if verb == "add" and not node.alive:
                cluster.start(n)
            command = {"add": ConfigCommand.ADD_NONVOTER, "promote": ConfigCommand.ADD_VOTER,
                       "remove": ConfigCommand.REMOVE_SERVER}[verb]
            cluster.step(leader.id, ev.ChangeMembership(next(self._request_ids), command, n, node.address))
        if len(self.frames) == action.at:
            self.acted(action, f"{verb} {n or ''}".strip(), [])

    def _alive(self, node) -> None:
        if not node.alive:
            raise ActionError(f"{node.id} is down")

    def _fail_requests(self, node_id: str, why: str) -> None:
        for rid, rec in list(self._pending.items()):
            if rec["node"] == node_id:
                self._update(rid, status="unknown", detail=why, done=True)


def _said(text: str, paper: str) -> dict:
    return {"text": text, "paper": paper, "source": None, "function": None}


class World:
    """A learner's simulated cluster with its branches."""

    def __init__(self, spec: Spec | None = None) -> None:
        self.spec = spec or Spec()
        self.made = 0   # frames made, over all branches (a fork shares its past)
        self.branches: list[Branch] = [Branch(0, None, 0)]
        self.current = 0
        self._run = _Run(self.spec, self.branch.frames)

    @property
    def branch(self) -> Branch:
        return self.branches[self.current]

    # -- reading

    def extend(self, count: int) -> None:
        """Make frames until the branch has ``count`` (or ends)."""
        branch, run = self.branch, self._run
        count = min(count, MAX_FRAMES)
        try:
            while len(branch.frames) < count and branch.ended is None:
                if self.made >= MAX_WORLD_FRAMES:
                    branch.ended = f"this simulation made {MAX_WORLD_FRAMES} frames; start a new one"
                    break
                before = len(branch.frames)
                if not run.advance():
                    branch.ended = "nothing is left to happen"
                self.made += len(branch.frames) - before
        except Violation as exc:
            branch.ended = f"safety violation: {exc}"
        if len(branch.frames) >= MAX_FRAMES and branch.ended is None:
            branch.ended = f"this branch reached {MAX_FRAMES} frames; rewind to go another way"

    def frames(self, start: int, count: int) -> list[dict]:
        self.extend(start + count)
        return self.branch.frames[start:start + count]

    def frames_json(self, start: int, count: int) -> str:
        """:meth:`frames` as a JSON array, without parsing them first."""
        self.extend(start + count)
        return self.branch.frames.json(start, start + count)

    def run_until(self, condition, limit: int = 5000) -> int:
        """Make frames until ``condition(cluster)`` holds; the frame count then."""
        branch = self.branch
        for _ in range(limit):
            if condition(self._run.cluster) or branch.ended:
                break
            self.extend(len(branch.frames) + 1)
        else:
            raise Violation("Lesson", f"condition not reached within {limit} frames")
        return len(branch.frames)

    @property
    def cluster(self) -> SimCluster:
        return self._run.cluster

    # -- acting

    def act(self, at: int, verb: str, node: str | None = None, key: str | None = None, value: str | None = None,
            message: int | None = None, to: str | None = None) -> tuple[bool, int]:
        """Take an action after the first ``at`` frames of the current branch
        (or after the first frame that may be followed by one: a step drawn
        in two halves is never cut in two). Returns whether that forked a new
        branch, and the ``at`` the action was taken at. An action that cannot
        be taken raises :class:`ActionError` and changes nothing."""
        if at < 0:
            raise ActionError("at must be 0 or more")
        self.extend(at)
        branch = self.branch
        at = min(at, len(branch.frames))
        while at in branch.frames.inseparable:
            at += 1
            self.extend(at)
        action = Action(at, verb, node, key, value, message, to)
        if branch.ended and at == len(branch.frames):
            raise ActionError(f"this branch has ended ({branch.ended}); rewind to act")
        forked = at < len(branch.frames)
        if forked and len(self.branches) >= MAX_BRANCHES:
            raise ActionError(f"this simulation has {MAX_BRANCHES} branches already; start a new one")
        if forked:
            fork = Branch(len(self.branches), branch.id, at, [a for a in branch.actions if a.at < at])
            run = self._replay(fork, at, branch.frames)
        else:
            fork, run = branch, self._run
        try:
            run.take(action)
        except Violation as exc:
            fork.ended = f"safety violation: {exc}"
        fork.actions.append(action)
        if forked:
            self.branches.append(fork)
            self.current, self._run = fork.id, run
        return forked, at

    def _replay(self, branch: Branch, at: int, old_frames: Frames) -> _Run:
        """A run of ``branch``'s actions up to its frame ``at``, its frames
        those of ``old_frames`` (the same ones, made again)."""
        run = _Run(self.spec, Frames())
        actions = iter(branch.actions)
        pending = next(actions, None)
        while len(run.frames) < at or (pending is not None and pending.at == len(run.frames)):
            if pending is not None and pending.at == len(run.frames):
                run.take(pending)
                pending = next(actions, None)
            elif not run.advance():
                break
        if len(run.frames) != at:
            raise Violation("Replay", f"rebuilt {len(run.frames)} frames, not {at}")
        branch.frames = run.frames = old_frames.head(at)
        return run

    def switch(self, branch_id: int) -> None:
        """Return to another branch, where it was left."""
        if not 0 <= branch_id < len(self.branches):
            raise ActionError(f"no branch {branch_id}")
        if branch_id == self.current:
            return
        target = self.branches[branch_id]
        self._run = self._replay(target, len(target.frames), target.frames)
        self.current = branch_id

    def summary(self) -> dict:
        return {"nodes": list(self.spec.nodes), "voters": list(self.spec.voters), "seed": self.spec.seed,
                "branch": self.current, "branches": [b.summary() for b in self.branches],
                "frames": len(self.branch.frames), "ended": self.branch.ended,
                "heartbeat_ms": self.spec.config.heartbeat_interval}


def random_seed() -> int:
    return random.SystemRandom().randrange(1, 2 ** 31)

