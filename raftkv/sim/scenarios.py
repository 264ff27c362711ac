"""Scripted scenarios: the classic Raft situations, step by step.

Theory of operation: a scenario is a data-driven file in ``testdata/``
(format: :mod:`raftkv.sim.datadriven`; the commands: ``testdata/README.md``
and :data:`COMMANDS` below). A :class:`Script` wraps a :class:`SimCluster`
with a fixed seed and no random faults and gives the verbs; each command line
of the file calls one verb (crash this node, cut that link, write a key).
With tracing on, every event prints as a ``----{...}`` header (as in the
etcd/raft trace harness the project started from), followed by the hclog
lines it caused on that node and one state line per node: role, term,
commit, applied, last index and the log as terms. Under each command the
file holds the trace lines that command printed; the test suite checks them
and ``raftkv sim --scenario NAME --trace`` prints them as the run goes. The
invariant checker watches every step either way.
"""

from __future__ import annotations

import pathlib
from dataclasses import fields, replace

from raftkv.observability.hclog import render_line
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

from . import datadriven
from .clients import ClientModel, Read
from .cluster import SIM_CONFIG, SimCluster
from .invariants import InvariantChecker, Violation

TESTDATA = pathlib.Path(__file__).parent / "testdata"

# the order --list and the dashboard offer them in: simplest first; files
# not named here follow in alphabetical order
TEACHING_ORDER = ("first-election", "leader-crash", "follower-catch-up", "stale-leader-partition",
                  "nonvoter-join-and-promotion", "snapshot-install", "leadership-transfer",
                  "split-vote", "figure-8", "snapshot-conflicting-suffix", "amnesia",
                  "weak-read-partition", "lease-clock-drift")


def describe_message(msg) -> str:
    t = type(msg)
    if t is RequestVote:
        kind = "pre-vote" if msg.pre_vote else "vote"
        return (f"RequestVote({kind} term={msg.term} last={msg.last_log_index}@{msg.last_log_term}"
                f"{' transfer' if msg.leadership_transfer else ''})")
    if t is RequestVoteResponse:
        kind = "pre-vote" if msg.pre_vote else "vote"
        return f"RequestVoteResponse({kind} term={msg.term} granted={str(msg.granted).lower()})"
    if t is AppendEntries:
        if msg.heartbeat:
            return f"Heartbeat(term={msg.term} commit={msg.leader_commit})"
        span = f"{msg.entries[0].index}..{msg.entries[-1].index}" if msg.entries else "none"
        return (f"AppendEntries(term={msg.term} prev={msg.prev_log_index}@{msg.prev_log_term} "
                f"entries={span} commit={msg.leader_commit})")
    if t is AppendEntriesResponse:
        if msg.heartbeat:
            return f"HeartbeatResponse(term={msg.term})"
        return (f"AppendEntriesResponse(term={msg.term} success={str(msg.success).lower()} "
                f"match={msg.match_index} last={msg.last_log_index})")
    if t is InstallSnapshot:
        return f"InstallSnapshot(term={msg.term} snapshot={msg.meta.index}@{msg.meta.term})"
    if t is InstallSnapshotResponse:
        return f"InstallSnapshotResponse(term={msg.term} success={str(msg.success).lower()})"
    if t is TimeoutNow:
        return f"TimeoutNow(term={msg.term})"
    return t.__name__


class Script:
    """A cluster plus the verbs scenarios are written in."""

    def __init__(self, nodes: list[str], out=None, config=SIM_CONFIG, seed: int = 7,
                 show_heartbeats: bool = False) -> None:
        self.checker = InvariantChecker()
        self.cluster = SimCluster(seed, nodes, config=config, observer=self.checker)
        self.out = out
        self.show_heartbeats = show_heartbeats
        self._pending_header: str | None = None
        self._headers = 0   # headers printed so far
        # writes go through the client model so that reads can say which
        # acknowledged write they miss; a stale read beyond what its level
        # promises still raises, a documented limit is printed instead
        self.clients = ClientModel(self.cluster, self.checker)
        self.clients.record_documented_limits = True
        self.clients.on_read.append(self._read_done)
        if out is not None:
            self.cluster.trace = self._trace
            self.cluster.after_step.append(self._after)

    # -- tracing

    def _trace(self, kind: str, payload) -> None:
        if kind == "event":
            self._pending_header = payload
        elif kind == "log":
            node_id, effect = payload
            self._header()
            line = render_line(None, effect.level, effect.logger, effect.message, effect.fields)
            self.out(f"  {node_id} {line.rstrip()}")
        elif kind == "send":
            node_id, to, msg = payload
            if self.show_heartbeats or not getattr(msg, "heartbeat", False):
                self._header()
                self.out(f"  {node_id} -> {to}: {describe_message(msg)}")
        elif kind == "executor":
            node_id, text = payload
            self._header()
            self.out(f"  {node_id} {text}")

    def _hidden(self, effect) -> bool:
        return (type(effect) is fx.Send and not self.show_heartbeats
                and getattr(effect.message, "heartbeat", False))

    def _header(self) -> None:
        if self._pending_header is not None:
            self._headers += 1
            self.out(f"----{{{self._pending_header} t={self.cluster.now}ms}}")
            self._pending_header = None

    def _after(self, node, effects) -> None:
        # a step that did anything but log and send heartbeats shows the
        # states after it, if it printed a line
        shown = any(type(effect) is not fx.Log and not self._hidden(effect) for effect in effects)
        if shown and self._pending_header is None:
            self.state()
        self._pending_header = None

    def state(self) -> None:
        for n in self.cluster.nodes.values():
            if n.alive or n.incarnation:
                self.out(f"    {self.cluster.describe_node(n)}")

    def note(self, text: str) -> None:
        if self.out is not None:
            self.out(f"==== {text}")

    # -- verbs

    def request_id(self) -> int:
        return self.clients._request_id()

    def start(self, *ids: str) -> None:
        for i in ids:
            self.cluster.start(i)

    def bootstrap(self, *ids: str) -> None:
        self.cluster.bootstrap(list(ids))

    def run(self, ms: int) -> None:
        self.cluster.run_until(self.cluster.now + ms)

    def run_until(self, cond, limit_ms: int = 5000, what: str = "condition") -> None:
        deadline = self.cluster.now + limit_ms
        while not cond():
            if self.cluster.now >= deadline:
                raise Violation("Scenario", f"{what} not reached within {limit_ms}ms")
            self.cluster.run_until(min(deadline, self.cluster.now + 5))

    def leader(self) -> str | None:
        node = self.cluster.leader()
        return node.id if node else None

    def wait_leader(self, among=None, limit_ms: int = 5000) -> str:
        def ok():
            leader = self.cluster.leader()
            return leader is not None and (among is None or leader.id in among) and leader.raft.committed_in_term()
        self.run_until(ok, limit_ms, "a leader")
        return self.leader()

    def timeout(self, node_id: str) -> None:
        """Make a node's election timer fire now."""
        node = self.cluster.nodes[node_id]
        node.raft.election_deadline = self.cluster.now
        node.raft.last_leader_contact = -(10 ** 9)
        self.cluster.step(node_id, ev.Tick(self.cluster.now), label=f"Timeout {node_id}")

    def write(self, node_id: str, key: str, value: str) -> None:
        self.clients.write(node_id, key, value, label=f"Propose {node_id} {key}={value}")

    def read(self, node_id: str, key: str, level: str) -> Read:
        """A client read at ``level``; what it returned (or why it waits or
        was refused) prints as a line of its node."""
        label = f"Read {node_id} {key} level={level}"
        if level in ("none", "weak") and self.cluster.trace:
            self.cluster.trace("event", label)   # served off the core: no step prints it
        headers = self._headers
        read = self.clients.read(node_id, key, level=level, label=label)
        if read.outcome == "waiting":
            if headers == self._headers and self.cluster.trace:
                self.cluster.trace("event", label)   # the step printed nothing of its own
            self._line(read.node, f"read {key} level={level} waits: {self._wait_reason(read)}")
        return read

    def _wait_reason(self, read: Read) -> str:
        raft = self.cluster.nodes[read.node].raft
        if read.level == "strong":
            return "until its entry (a write of nothing) is committed and applied"
        if not raft.is_leader:
            return "for the read index it asked the leader for"
        if read.level == "lease":
            return "no read lease held, so a majority must answer a heartbeat round, as for linearizable"
        return "until a majority answers a heartbeat round (ReadIndex)"

    def _line(self, node_id: str, text: str) -> None:
        if self.cluster.trace:
            self.cluster.trace("executor", (node_id, text))

    def _read_done(self, read: Read) -> None:
        key, level = read.key, read.level
        if read.outcome == "refused":
            self._line(read.node, f"read {key} level={level} refused: {read.why} (the HTTP layer then asks the leader)")
            return
        at = {"linearizable": f"read index={read.index}, ", "lease": f"read index={read.index}, ",
              "strong": f"its entry={read.index}, "}.get(level, "")
        value = "(no value)" if read.value is None else read.value
        self._line(read.node, f"read {key} level={level} returned {value} ({at}state at applied={read.served_at})")
        if read.stale:
            missed = self.clients.committed_value(key, read.acked_before)
            self._line(read.node, f"STALE: index {read.acked_before}, acknowledged before this read began, has "
                                  f"{key}={missed}; {read.node} answered from index {read.served_at}")
            self._line(read.node, f"that is the documented limit of level {level}: {read.why}")
        elif read.acked_before:
            self._line(read.node, f"up to date: it sees index {read.acked_before}, the last acknowledged "
                                  "before it began")

    def waiting_reads(self) -> None:
        for read in self.clients.waiting.values():
            self._line(read.node, f"read {read.key} level={read.level} asked at t={read.began}ms still waits")

    def set_clock_rate(self, node_id: str, rate: float) -> None:
        self.cluster.set_clock_rate(node_id, rate)
        self._line(node_id, f"runs its clock at {rate:.0%} of real time from here on")

    def write_many(self, node_id: str, count: int, prefix: str = "k") -> None:
        for i in range(count):
            self.write(node_id, f"{prefix}{i}", f"v{i}")
            self.run(2)

    def caught_up(self, *ids: str) -> bool:
        leader = self.cluster.leader()
        if leader is None:
            return False
        return all(self.cluster.nodes[i].alive and
                   self.cluster.nodes[i].raft.last_applied >= leader.raft.commit_index for i in ids)

    def crash(self, node_id: str) -> None:
        self.cluster.crash(node_id)

    def isolate(self, node_id: str) -> None:
        for other in self.cluster.nodes:
            if other != node_id:
                self.cluster.blocked.update({(node_id, other), (other, node_id)})

    def block(self, src: str, dst: str) -> None:
        self.cluster.blocked.add((src, dst))

    def heal(self) -> None:
        self.cluster.blocked.clear()

    def change(self, command: ConfigCommand, server_id: str) -> None:
        leader = self.leader()
        address = self.cluster.nodes[server_id].address
        self.cluster.step(leader, ev.ChangeMembership(self.request_id(), command, server_id, address),
                          label=f"ChangeMembership {command} {server_id}")

    def transfer_leadership(self, leader_id: str, target: str) -> None:
        self.cluster.step(leader_id, ev.TransferLeadership(self.request_id(), target),
                          label=f"TransferLeadership {target}")

    def snapshot(self, node_id: str) -> None:
        self.cluster.step(node_id, ev.RequestSnapshot(self.request_id()), label=f"Snapshot {node_id}")

    def timeout_now(self, node_id: str) -> None:
        """Start an election on a node now, past leader stickiness, as a
        leadership transfer does."""
        node = self.cluster.nodes[node_id]
        self.cluster.step(node_id, ev.Receive(node_id, TimeoutNow(node.raft.current_term, node_id)),
                          label=f"Campaign {node_id}")

    def campaign(self, node_id: str, commit: bool = True) -> None:
        """Make a node win an election now, so scripts decide who leads and
        when. A node whose term is behind loses the first round and tries again."""
        node = self.cluster.nodes[node_id]
        for _ in range(3):
            self.timeout_now(node_id)
            self.run(20)
            if node.raft.is_leader:
                break
        if commit:
            self.run_until(lambda: node.raft.is_leader and node.raft.committed_in_term(), 60_000,
                           f"{node_id} leads")

    def autopilot_promote(self, server_id: str) -> None:
        """What autopilot does for a nonvoter that caught up: log it and ask
        the leader to make it a voter."""
        def caught_up():
            leader = self.cluster.leader()
            if leader is None:
                return False
            st = leader.raft.status()
            peer = st.peer(server_id)
            return peer is not None and peer.match_index >= st.last_log_index
        self.run_until(caught_up, what=f"{server_id} caught up")
        leader = self.cluster.leader()
        self._header()
        effect = fx.Log("INFO", "raft.autopilot", "Promoting server",
                        (("id", fx.Bare(server_id)), ("address", fx.Bare(self.cluster.nodes[server_id].address)),
                         ("name", fx.Bare(server_id))))
        if self.out is not None:
            line = render_line(None, effect.level, effect.logger, effect.message, effect.fields)
            self.out(f"  {leader.id} {line.rstrip()}")
        self.change(ConfigCommand.ADD_VOTER, server_id)


# ---------------------------------------------------------------- the command language

def _nodes(case: datadriven.Case) -> list[str]:
    return [a.key for a in case.args if not a.values]


def _option(case: datadriven.Case, key: str, default=None):
    for arg in case.args:
        if arg.key == key and arg.values:
            return arg.values if key == "among" else arg.value
    return default


def _one_node(case: datadriven.Case) -> str:
    nodes = _nodes(case)
    if len(nodes) != 1:
        raise ValueError(f"{case.name} takes one node, got {nodes}")
    return nodes[0]


def _condition(script: Script, case: datadriven.Case):
    """The predicate a run-until or step-until line names (see README.md)."""
    args = [a for a in case.args if a.key != "limit"]
    if not args:
        raise ValueError(f"{case.name} needs a condition")
    kind, rest = args[0], args[1:]
    nodes = [a.key for a in rest if not a.values]
    live = script.cluster.nodes

    def raft(i):
        node = live[i]
        return node.raft if node.alive else None

    if kind.key == "caught-up":
        return lambda: script.caught_up(*nodes)
    if kind.key == "leader":
        return lambda: all(raft(i) is not None and raft(i).is_leader for i in nodes)
    if kind.key == "not-leader":
        return lambda: all(raft(i) is None or not raft(i).is_leader for i in nodes)
    if kind.key == "compacted":
        # past the bootstrap configuration and the first leader's no-op
        return lambda: all(raft(i) is not None and raft(i).log.base_index > 2 for i in nodes)
    if kind.key == "holds":
        pairs = [(a.key, a.value) for a in rest if a.values]
        return lambda: all(live[i].alive and live[i].state.get(k) == v for i in nodes for k, v in pairs)
    if kind.key == "term":
        term = int(kind.value)
        return lambda: all(raft(i) is not None and raft(i).current_term == term for i in nodes)
    if kind.key == "voted-for":
        return lambda: all(raft(i) is not None and raft(i).voted_for == kind.value for i in nodes)
    if kind.key == "match-index":
        opts = {a.key: a.value for a in rest if a.values}
        leader, peer, least = opts["leader"], opts["peer"], int(opts["min"])
        def matched() -> bool:
            node = raft(leader)
            if node is None or not node.is_leader:
                return False
            progress = node.status().peer(peer)
            return progress is not None and progress.match_index >= least
        return matched
    raise ValueError(f"unknown condition {kind.key!r}")


def _what(case: datadriven.Case) -> str:
    return " ".join(a for a in case.rest.split() if not a.startswith("limit="))


def _run_until(script: Script, case: datadriven.Case) -> None:
    script.run_until(_condition(script, case), int(_option(case, "limit", 5000)), _what(case))


def _step_until(script: Script, case: datadriven.Case) -> None:
    # checked after every event rather than every 5 ms, to stop in the
    # middle of a burst of messages
    limit = int(_option(case, "limit", 5000))
    if not script.cluster.run_until(script.cluster.now + limit, stop=_condition(script, case)):
        raise Violation("Scenario", f"{_what(case)} not reached within {limit}ms")


def _redeliver(script: Script, case: datadriven.Case) -> None:
    """``redeliver src->dst Type``: a late duplicate of the last such message."""
    link, kind = _nodes(case)
    src, arrow, dst = link.partition("->")
    if not arrow:
        raise ValueError(f"redeliver takes src->dst and a message type, got {case.rest!r}")
    script.cluster.redeliver(src, dst, kind)


def _propose(script: Script, case: datadriven.Case) -> None:
    node = _one_node(case)
    if node == "leader":
        # who wins an election after a partition is timing, not the point of the script
        node = script.leader()
    for arg in case.args:
        if arg.values:
            script.write(node, arg.key, arg.value)


def _node_and_key(case: datadriven.Case) -> tuple[str, str]:
    words = _nodes(case)
    if len(words) != 2:
        raise ValueError(f"read takes a node and a key, got {words}")
    return words[0], words[1]


def _links(case: datadriven.Case) -> list[tuple[str, str]]:
    links = []
    for link in _nodes(case):
        src, arrow, dst = link.partition("->")
        if not arrow:
            raise ValueError(f"{case.name} takes links written src->dst, got {link!r}")
        links.append((src, dst))
    return links


COMMANDS = {
    "note": lambda s, c: s.note(c.rest),
    "start": lambda s, c: s.start(*_nodes(c)),
    "bootstrap": lambda s, c: s.bootstrap(*_nodes(c)),
    "crash": lambda s, c: [s.crash(i) for i in _nodes(c)],
    "wipe": lambda s, c: [s.cluster.wipe(i) for i in _nodes(c)],
    "isolate": lambda s, c: [s.isolate(i) for i in _nodes(c)],
    "block": lambda s, c: [s.block(src, dst) for src, dst in _links(c)],
    "unblock": lambda s, c: [s.cluster.blocked.discard(link) for link in _links(c)],
    "heal": lambda s, c: s.heal(),
    "run": lambda s, c: s.run(int(_option(c, "ms"))),
    "run-until": _run_until,
    "step-until": _step_until,
    "wait-leader": lambda s, c: s.wait_leader(_option(c, "among"), int(_option(c, "limit", 5000))),
    "timeout": lambda s, c: [s.timeout(i) for i in _nodes(c)],
    "timeout-now": lambda s, c: s.timeout_now(_one_node(c)),
    "campaign": lambda s, c: s.campaign(_one_node(c), commit=_option(c, "commit", "true") == "true"),
    "propose": _propose,
    "read": lambda s, c: s.read(*_node_and_key(c), _option(c, "level", "linearizable")),
    "reads": lambda s, c: s.waiting_reads(),
    "clock": lambda s, c: s.set_clock_rate(_one_node(c), float(_option(c, "rate"))),
    "propose-many": lambda s, c: s.write_many(_one_node(c), int(_option(c, "count")), _option(c, "prefix", "k")),
    "transfer-leadership": lambda s, c: s.transfer_leadership(
        s.leader() if _option(c, "from") == "leader" else _option(c, "from"), _option(c, "to")),
    "add-nonvoter": lambda s, c: s.change(ConfigCommand.ADD_NONVOTER, _one_node(c)),
    "add-voter": lambda s, c: s.change(ConfigCommand.ADD_VOTER, _one_node(c)),
    "remove-server": lambda s, c: s.change(ConfigCommand.REMOVE_SERVER, _one_node(c)),
    "autopilot-promote": lambda s, c: s.autopilot_promote(_one_node(c)),
    "snapshot": lambda s, c: s.snapshot(_one_node(c)),
    "redeliver": _redeliver,
}

_CONFIG_FIELDS = {f.name.replace("_", "-"): f for f in fields(SIM_CONFIG)}


def new_script(case: datadriven.Case, out=None) -> Script:
    """The Script a scenario's first line, ``cluster nodes=(...) [seed=N]
    [raft-config-field=value ...]``, describes."""
    if case.name != "cluster":
        raise ValueError(f"a scenario starts with a 'cluster' line, not {case.name!r}")
    nodes, seed, overrides = None, 7, {}
    for arg in case.args:
        if arg.key == "nodes":
            nodes = list(arg.values)
        elif arg.key == "seed":
            seed = int(arg.value)
        elif arg.key in _CONFIG_FIELDS:
            f = _CONFIG_FIELDS[arg.key]
            overrides[f.name] = arg.value == "true" if f.type in (bool, "bool") else int(arg.value)
        else:
            raise ValueError(f"cluster: unknown argument {arg.key!r}")
    if not nodes:
        raise ValueError("cluster needs nodes=(...)")
    return Script(nodes, out=out, config=replace(SIM_CONFIG, **overrides), seed=seed)


class Player:
    """Plays a scenario's cases in order: the first builds the Script, the
    rest are verbs on it. ``on_script`` sees the Script before any verb runs
    (the recorder hooks in there)."""

    def __init__(self, out=None, on_script=None) -> None:
        self.out = out
        self.on_script = on_script
        self.script: Script | None = None

    def __call__(self, case: datadriven.Case) -> None:
        if self.script is None:
            self.script = new_script(case, self.out)
            if self.on_script is not None:
                self.on_script(self.script)
            return
        if case.name not in COMMANDS:
            raise ValueError(f"unknown command {case.name!r}; one of {', '.join(COMMANDS)}")
        COMMANDS[case.name](self.script, case)


# ---------------------------------------------------------------- scenario files

def scenario_names() -> list[str]:
    names = {p.stem for p in TESTDATA.glob("*.txt")}
    return [n for n in TEACHING_ORDER if n in names] + sorted(names - set(TEACHING_ORDER))


def scenario_path(name: str) -> pathlib.Path:
    path = TESTDATA / f"{name}.txt"
    if name not in scenario_names():
        raise KeyError(f"unknown scenario {name!r}")
    return path


def play(path: str | pathlib.Path, out=None, on_script=None) -> Script:
    """Run a scenario file's commands, printing through ``out`` without checking."""
    player = Player(out, on_script)
    path = pathlib.Path(path)
    cases, _ = datadriven.parse(path.read_text(encoding="utf-8"))
    for case in cases:
        try:
            player(case)
        except Exception as exc:
            exc.add_note(f"at {path}:{case.line}: {case.command}")
            raise
    return player.script


def run_scenario(name: str, out=None) -> Script:
    """Run a packaged scenario by name; ``out`` receives its trace lines."""
    return play(scenario_path(name), out)


def check_scenario(path: str | pathlib.Path, rewrite: bool = False) -> str:
    """Run a scenario file and compare each command's trace lines with the
    block under it (or write them there with ``rewrite``). Returns the
    whole trace."""
    lines: list[str] = []
    player = Player(out=lines.append)

    def handle(case: datadriven.Case) -> str:
        lines.clear()
        player(case)
        return "".join(f"{line}\n" for line in lines)
    return "".join(datadriven.run_file(path, handle, rewrite))
