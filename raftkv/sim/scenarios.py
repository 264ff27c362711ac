"""Scripted scenarios: the classic Raft situations, step by step.

Theory of operation: each scenario drives a :class:`SimCluster` with a fixed
seed and no random faults, through a short script (crash this node, cut that
link, write a key). With ``trace`` on, every event prints as a ``----{...}``
header (as in the etcd/raft trace harness the project started from), followed
by the hclog lines it caused on that node and one state line per node:
role, term, commit, applied, last index and the log as terms. The same
scenarios run under the invariant checker in the test suite, and the golden
traces in ``tests/sim/golden`` pin their output.
"""

from __future__ import annotations

from dataclasses import replace

from raftkv.hclog import render_line
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand
from raftkv.raft.messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot,
                                  InstallSnapshotResponse, RequestVote, RequestVoteResponse, TimeoutNow)

from .cluster import SIM_CONFIG, SimCluster, encode_command
from .invariants import InvariantChecker, Violation


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
        self._next_id = 0
        self._pending_header: str | None = None
        if out is not None:
            self.cluster.trace = self._trace
            self.cluster.on_effects.append(self._after)

    # -- tracing

    def _trace(self, kind: str, payload) -> None:
        if kind == "event":
            self._pending_header = payload
        elif kind == "log":
            node_id, effect = payload
            self._header()
            line = render_line(None, effect.level, effect.logger, effect.message, effect.fields)
            self.out(f"  {node_id} {line.rstrip()}")

    def _header(self) -> None:
        if self._pending_header is not None:
            self.out(f"----{{{self._pending_header} t={self.cluster.now}ms}}")
            self._pending_header = None

    def _after(self, node, effects) -> None:
        shown = False
        for effect in effects:
            if type(effect) is fx.Send:
                msg = effect.message
                if not self.show_heartbeats and getattr(msg, "heartbeat", False):
                    continue
                self._header()
                self.out(f"  {node.id} -> {effect.to}: {describe_message(msg)}")
                shown = True
            elif type(effect) is not fx.Log:
                shown = True
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
        self._next_id += 1
        return self._next_id

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
        self.cluster.step(node_id, ev.Propose(self.request_id(), encode_command(key, value)),
                          label=f"Propose {node_id} {key}={value}")

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
        self.note(f"isolate {node_id}")
        for other in self.cluster.nodes:
            if other != node_id:
                self.cluster.blocked.update({(node_id, other), (other, node_id)})

    def block(self, src: str, dst: str) -> None:
        self.cluster.blocked.add((src, dst))

    def heal(self) -> None:
        self.note("heal the network")
        self.cluster.blocked.clear()

    def change(self, command: ConfigCommand, server_id: str) -> None:
        leader = self.leader()
        address = self.cluster.nodes[server_id].address
        self.cluster.step(leader, ev.ChangeMembership(self.request_id(), command, server_id, address),
                          label=f"ChangeMembership {command} {server_id}")


# ---------------------------------------------------------------- scenarios

def first_election(s: Script) -> None:
    s.note("three fresh voters; the first timer to fire starts a pre-vote, then the election")
    s.start("n1", "n2", "n3")
    s.bootstrap("n1", "n2", "n3")
    leader = s.wait_leader()
    s.write(leader, "user", "kj")
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="replication")


def leader_crash(s: Script) -> None:
    first_election(s)
    old = s.leader()
    s.note(f"kill -9 the leader {old}")
    s.crash(old)
    new = s.wait_leader()
    s.write(new, "after", "crash")
    s.note(f"restart {old}: it rejoins as a follower and catches up")
    s.start(old)
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="catch-up")


def follower_catch_up(s: Script) -> None:
    first_election(s)
    leader = s.leader()
    lagging = next(i for i in ("n3", "n2") if i != leader)
    s.note(f"{lagging} goes down and misses writes")
    s.crash(lagging)
    s.write_many(leader, 6)
    other = next(i for i in ("n1", "n2", "n3") if i not in (leader, lagging))
    s.note(f"leadership moves to {other}, which does not know how far {lagging} got")
    s.cluster.step(leader, ev.TransferLeadership(s.request_id(), other), label=f"TransferLeadership {other}")
    s.wait_leader(among=[other])
    s.note(f"restart {lagging}: the previous-log check fails and the leader backs off")
    s.start(lagging)
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="catch-up")


def stale_leader_partition(s: Script) -> None:
    first_election(s)
    old = s.leader()
    s.isolate(old)
    s.run_until(lambda: not s.cluster.nodes[old].raft.is_leader, what="check-quorum step-down")
    new = s.wait_leader(among=[i for i in ("n1", "n2", "n3") if i != old])
    s.write(new, "fresh", "write")
    s.write(old, "stale", "write")   # refused: the old leader knows it is not leader any more
    s.heal()
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="catch-up")


def _autopilot_promote(s: Script, server_id: str) -> None:
    s.run_until(lambda: (s.cluster.leader() is not None and server_id in s.cluster.leader().raft.progress
                         and s.cluster.leader().raft.progress[server_id].match_index
                         >= s.cluster.leader().raft.log.last_index), what=f"{server_id} caught up")
    leader = s.cluster.leader()
    s._header()
    effect = fx.Log("INFO", "raft.autopilot", "Promoting server",
                    (("id", fx.Bare(server_id)), ("address", fx.Bare(s.cluster.nodes[server_id].address)),
                     ("name", fx.Bare(server_id))))
    if s.out is not None:
        s.out(f"  {leader.id} {render_line(None, effect.level, effect.logger, effect.message, effect.fields).rstrip()}")
    s.change(ConfigCommand.ADD_VOTER, server_id)


def nonvoter_join_and_promotion(s: Script) -> None:
    s.note("n1 bootstraps alone, takes writes, then n2 and n3 join as nonvoters")
    s.start("n1")
    s.bootstrap("n1")
    s.wait_leader()
    s.write_many("n1", 3)
    for new in ("n2", "n3"):
        s.start(new)
        s.change(ConfigCommand.ADD_NONVOTER, new)
        _autopilot_promote(s, new)
        s.run_until(lambda: s.caught_up(new), what=f"{new} promoted")
    s.write("n1", "user", "kj")
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="replication")


def snapshot_install(s: Script) -> None:
    first_election(s)
    leader = s.leader()
    lagging = next(i for i in ("n3", "n2") if i != leader)
    s.note(f"{lagging} goes down; the others snapshot and compact their logs")
    s.crash(lagging)
    s.write_many(leader, SIM_CONFIG.snapshot_threshold + SIM_CONFIG.trailing_logs)
    s.run_until(lambda: s.cluster.nodes[leader].raft.log.base_index > 2, limit_ms=2000, what="compaction")
    s.note(f"restart {lagging}: what it needs is compacted away, so it gets the snapshot")
    s.start(lagging)
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="catch-up")


def leadership_transfer(s: Script) -> None:
    first_election(s)
    leader = s.leader()
    target = next(i for i in ("n2", "n3", "n1") if i != leader)
    s.cluster.step(leader, ev.TransferLeadership(s.request_id(), target), label=f"TransferLeadership {target}")
    s.wait_leader(among=[target])
    s.write(target, "moved", "yes")
    s.run_until(lambda: s.caught_up("n1", "n2", "n3"), what="replication")


def split_vote(s: Script) -> None:
    s.note("four voters; n1 and n2 time out together and each wins one other vote")
    s.start("n1", "n2", "n3", "n4")
    s.bootstrap("n1", "n2", "n3", "n4")
    for a, b in (("n1", "n4"), ("n2", "n3"), ("n1", "n2"), ("n2", "n1")):
        s.block(a, b)
    s.timeout("n1")
    s.timeout("n2")
    s.run_until(lambda: all(s.cluster.nodes[i].raft.current_term == 2 for i in ("n1", "n2")),
                what="both candidates at term 2")
    s.run(30)
    s.note("nobody has 3 of 4 votes; the next randomized timeout decides")
    s.heal()
    s.wait_leader()
    s.run_until(lambda: s.caught_up("n1", "n2", "n3", "n4"), what="replication")


CALM = replace(SIM_CONFIG, heartbeat_timeout=100_000, election_timeout=100_000,
               leader_lease_timeout=50_000, snapshot_interval=10_000_000, max_inflight=1)


def campaign(s: Script, node_id: str, commit: bool = True) -> None:
    """Start an election on a node now, past leader stickiness (as a
    leadership transfer does), so scripts decide who runs and when. A node
    whose term is behind loses the first round and tries again."""
    node = s.cluster.nodes[node_id]
    for _ in range(3):
        s.cluster.step(node_id, ev.Receive(node_id, TimeoutNow(node.raft.current_term, node_id)),
                       label=f"Campaign {node_id}")
        s.run(20)
        if node.raft.is_leader:
            break
    if commit:
        s.run_until(lambda: node.raft.is_leader and node.raft.committed_in_term(), 60_000, f"{node_id} leads")


def figure_8(s: Script) -> None:
    """Raft paper Fig. 8: an entry from an earlier term on a majority is not
    yet committed; a leader that counted it would lose it to the next one."""
    ids = ["n1", "n2", "n3", "n4", "n5"]
    s.start(*ids)
    s.bootstrap(*ids)
    campaign(s, "n1")
    s.run_until(lambda: s.caught_up(*ids), 60_000, "n1 leads term 2")
    s.note("(a) n1 replicates entries of term 2 to n2 only, then crashes")
    for other in ("n3", "n4", "n5"):
        s.block("n1", other)
        s.block(other, "n1")
    s.write_many("n1", 10)
    s.crash("n1")
    s.note("(b) n5 wins term 3 with n3 and n4, appends one entry locally, then crashes")
    s.cluster.blocked = {(a, b) for a in ids for b in ids if "n2" in (a, b) and a != b}
    s.cluster.step("n5", ev.Receive("n5", TimeoutNow(s.cluster.nodes["n5"].raft.current_term, "n5")),
                   label="Campaign n5")
    s.run_until(lambda: all(s.cluster.nodes[i].raft.voted_for == "n5" for i in ("n3", "n4")), what="votes")
    for other in ids:
        if other != "n5":
            s.block("n5", other)
    s.run_until(lambda: s.cluster.nodes["n5"].raft.is_leader, what="n5 leads")
    s.crash("n5")
    s.note("(c) n1 restarts and wins term 4; its term-2 entries reach n3, a majority")
    s.cluster.blocked = {("n1", "n4"), ("n4", "n1")}
    s.start("n1")
    campaign(s, "n1", commit=False)
    n1 = s.cluster.nodes["n1"]
    s.block("n1", "n3")
    s.cluster.run_until(s.cluster.now + 60_000, stop=lambda: n1.raft.progress["n2"].match_index >= 13)
    s.cluster.blocked.discard(("n1", "n3"))
    s.cluster.run_until(s.cluster.now + 60_000, stop=lambda: n1.alive and n1.raft.is_leader
                        and n1.raft.progress["n3"].match_index >= 10)
    s.note("n1 must not count replicas of term-2 entries; it crashes before its term-4 entry spreads")
    for other in ids:
        s.block("n1", other)
    s.crash("n1")
    s.run(50)  # whatever n1 still had in flight is lost on the blocked links
    s.note("(d) n5 restarts and wins term 5 (its last term 3 beats term 2) and overwrites them")
    s.cluster.blocked = set()
    s.start("n5")
    campaign(s, "n5")
    s.start("n1")
    s.run_until(lambda: s.caught_up(*ids), 60_000, "everyone converges")


def snapshot_conflicting_suffix(s: Script) -> None:
    """Fig. 13 rule 7: a follower whose entry at the snapshot index has another
    term must discard its whole log when it installs the snapshot."""
    ids = ["n1", "n2", "n3"]
    s.start(*ids)
    s.bootstrap(*ids)
    campaign(s, "n1")
    s.run_until(lambda: s.caught_up(*ids), 60_000, "n1 leads term 2")
    s.isolate("n1")
    s.note("n1, cut off, appends 60 entries of term 2 that nobody else will ever see")
    s.write_many("n1", 60, prefix="lost")
    s.crash("n1")
    s.heal()
    campaign(s, "n2")
    s.write_many("n2", 50)
    s.cluster.step("n2", ev.RequestSnapshot(s.request_id()), label="Snapshot n2")
    s.run_until(lambda: s.cluster.nodes["n2"].raft.log.base_index > 2, 60_000, "compaction")
    s.note("n1 restarts holding a different entry at the snapshot index")
    s.start("n1")
    s.run_until(lambda: s.caught_up(*ids), 60_000, "n1 installs the snapshot and catches up")


SCENARIOS = {
    "first-election": first_election,
    "leader-crash": leader_crash,
    "follower-catch-up": follower_catch_up,
    "stale-leader-partition": stale_leader_partition,
    "nonvoter-join-and-promotion": nonvoter_join_and_promotion,
    "snapshot-install": snapshot_install,
    "leadership-transfer": leadership_transfer,
    "split-vote": split_vote,
    "figure-8": figure_8,
    "snapshot-conflicting-suffix": snapshot_conflicting_suffix,
}
CONFIGS = {"figure-8": CALM, "snapshot-conflicting-suffix": CALM}

NODES = {"split-vote": ["n1", "n2", "n3", "n4"], "figure-8": ["n1", "n2", "n3", "n4", "n5"]}


def run_scenario(name: str, out=None) -> Script:
    script = Script(NODES.get(name, ["n1", "n2", "n3"]), out=out, config=CONFIGS.get(name, SIM_CONFIG))
    SCENARIOS[name](script)
    return script
