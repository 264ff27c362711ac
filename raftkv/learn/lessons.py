"""Lessons: guided tours of the simulator, with Back and Next and a "try it" the page checks.

Theory of operation: a :class:`Lesson` builds a :class:`~raftkv.learn.world.World`
from a script (:class:`Builder`): learner actions (the same verbs the page
offers) and waits for a condition on the simulated cluster. Each ``stop`` marks
the frame the script has reached with a title and a text; the page's Back and
Next seek to those frames, so going back shows exactly the state and the
narration it showed going forward. A lesson ends with a "try it": a task for
the learner and a check of the branch they made (:meth:`Lesson.check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from raftkv.raft.config import RaftConfig
from raftkv.sim.invariants import Violation

from .world import Spec, World

__all__ = ["LESSONS", "Builder", "Lesson"]


class Builder:
    """A lesson's script: acts on a world and marks stops."""

    def __init__(self, spec: Spec) -> None:
        self.world = World(spec)
        self.stops: list[dict] = []

    @property
    def cluster(self):
        return self.world.cluster

    @property
    def frames(self) -> int:
        return len(self.world.branch.frames)

    def act(self, verb: str, node: str | None = None, **kwargs) -> None:
        self.world.act(self.frames, verb, node=node, **kwargs)

    def until(self, condition: Callable, limit: int = 5000, what: str = "condition") -> None:
        try:
            self.world.run_until(condition, limit)
        except Violation:
            raise Violation("Lesson", f"{what} not reached within {limit} frames") from None

    def wait_ms(self, ms: int) -> None:
        """Let ``ms`` of simulated time pass."""
        end = self.cluster.now + ms
        self.until(lambda cluster: cluster.now >= end, what=f"{ms} ms")

    def frames_for(self, count: int) -> None:
        self.world.extend(self.frames + count)

    def stop(self, title: str, text: str) -> None:
        self.stops.append({"frame": self.frames - 1, "title": title, "text": text})


@dataclass
class Lesson:
    name: str
    title: str
    summary: str
    spec: Spec
    script: Callable[[Builder], None]
    try_it: str
    checker: Callable[[World], tuple[bool, str]]

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "summary": self.summary, "try_it": self.try_it}

    def build(self) -> tuple[World, list[dict]]:
        builder = Builder(self.spec)
        self.script(builder)
        builder.stops.append({"frame": builder.frames - 1, "title": "Try it", "text": self.try_it, "try_it": True})
        world = builder.world
        world.extend(builder.frames + 200)
        return world, builder.stops

    def check(self, world: World) -> tuple[bool, str]:
        return self.checker(world)


LESSONS: dict[str, Lesson] = {}


# ---------------------------------------------------------------- conditions on the simulated cluster

def _leader(cluster) -> str | None:
    node = cluster.leader()
    return node.id if node is not None and node.raft.committed_in_term() else None


def _raft(cluster, node_id: str):
    node = cluster.nodes[node_id]
    return node.raft if node.alive else None


def _role(cluster, node_id: str) -> str:
    raft = _raft(cluster, node_id)
    return raft.role if raft is not None else "Down"


def _caught_up(cluster, *ids: str) -> bool:
    leader = cluster.leader()
    return leader is not None and all(
        _raft(cluster, i) is not None and cluster.nodes[i].applied_index >= leader.raft.commit_index for i in ids)


def _settled(cluster, leader_id: str, *ids: str) -> bool:
    """The leader committed all it has, and these servers applied it."""
    raft = _raft(cluster, leader_id)
    return (raft is not None and raft.commit_index == raft.log.last_index
            and all(_raft(cluster, i) is not None and cluster.nodes[i].applied_index >= raft.commit_index
                    for i in (leader_id, *ids)))


def _match(cluster, leader_id: str, peer: str) -> int:
    raft = _raft(cluster, leader_id)
    if raft is None or not raft.is_leader:
        return -1
    progress = raft.status().peer(peer)
    return progress.match_index if progress else -1


def _logged(builder: Builder, text: str) -> Callable:
    """True once a frame made from here on printed a log line containing ``text``."""
    start = builder.frames

    def seen(cluster) -> bool:
        return any(text in line for f in builder.world.branch.frames[start:] for line in f["logs"])
    return seen


def _heartbeats_in_flight(builder: Builder) -> bool:
    last = builder.world.branch.frames[-1]
    return sum(1 for m in last["flight"] if m["type"] == "AppendEntries" and m["heartbeat"]) >= 2


def _leaders(frames: list[dict]) -> list[tuple[str, int]]:
    """(leader, term) in the order leaders appear in the frames."""
    out: list[tuple[str, int]] = []
    for frame in frames:
        for node in frame["nodes"]:
            if node.get("role") == "Leader" and (node["id"], node["term"]) not in out:
                out.append((node["id"], node["term"]))
    return out


def _acted(world: World, verb: str) -> list:
    return [a for a in world.branch.actions if a.verb == verb]


# ---------------------------------------------------------------- the lessons

def _first_election(b: Builder) -> None:
    c = b.cluster
    b.frames_for(0)
    b.stop("Three followers", "Three servers start as followers of no one, in term 1 with the same one-entry log "
           "(the configuration). Each has an election timer, the bar that runs down, set to a random time "
           "between one and two heartbeat timeouts. Whoever's runs out first will ask to lead.")
    b.until(lambda _: any(_role(c, i) == "Candidate" for i in c.nodes), what="a candidate")
    b.stop("A timer runs out", "A follower heard from no leader before its timer ran out, so it becomes a "
           "candidate. Before raising its term it asks for pre-votes: would the others vote for it? A server "
           "cut off from the rest cannot then drive the terms up and disturb the cluster when it returns.")
    b.until(lambda _: any(_raft(c, i) is not None and _raft(c, i).current_term >= 2 for i in c.nodes),
            what="term 2")
    b.stop("Pre-vote won: the real election", "A majority said yes. Now the candidate raises its term to 2, votes "
           "for itself, writes that vote to disk and asks for real votes with RequestVote. Each server grants "
           "one vote a term, to a candidate whose log is at least as up to date as its own.")
    b.until(lambda _: c.leader() is not None, what="a leader")
    b.stop("A leader", "Votes from a majority (itself and one more of three) make the candidate leader of term 2. "
           "It appends a no-op entry of its own term and sends it to everyone.")
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a settled cluster")
    b.frames_for(12)
    b.until(lambda _: _heartbeats_in_flight(b), what="heartbeats on their way")
    b.stop("Heartbeats", "The leader sends empty AppendEntries, heartbeats, every heartbeat interval. Each one "
           "restarts the followers' timers, so nobody else campaigns while the leader lives.")


def _check_first_election(world: World) -> tuple[bool, str]:
    branch = world.branch
    if not _acted(world, "drop"):
        return False, "Rewind to before the election and drop the votes heading to the candidate (click the arrows)."
    original = _leaders(world.branches[0].frames)[:1]
    now = _leaders(branch.frames)[:1]
    if not now:
        return False, "No one leads yet in this branch: press Play and watch."
    if now == original:
        return False, f"{now[0][0]} still won term {now[0][1]}: a vote got through. Drop every granted vote to it."
    return True, (f"Without those votes {original[0][0]} could not win term {original[0][1]}; {now[0][0]} leads "
                  f"term {now[0][1]} instead. A lost message only delays Raft: another election follows.")


def _replication(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a leader")
    b.frames_for(4)
    leader = _leader(c)
    b.stop("A leader, ready for writes", f"{leader} leads. A client write goes to the leader; a follower would "
           "refuse it and name the leader.")
    b.act("write", leader, key="x", value="1")
    b.stop("The leader appends", f"{leader} appends x=1 to its log in memory and sends it to both followers "
           "at once, while it writes the entry to its own disk. The entry is not committed yet: the client waits.")
    b.until(lambda _: any(f["event"].get("type") == "Fsync" and f["node"] != leader
                          for f in b.world.branch.frames[-1:]), what="a follower appends")
    b.stop("A follower appends", "The follower checks that it holds the entry just before the new one (the "
           "previous index and term), appends the entry, writes it to disk, and only then answers yes: an answer "
           "is a promise that survives a crash.")
    index = _raft(c, leader).log.last_index
    b.until(lambda _: _raft(c, leader) is not None and _raft(c, leader).commit_index >= index, what="commit")
    b.stop("Committed", f"A majority (the leader and one follower) holds entry {index}: the leader commits it, "
           "applies x=1 to its state machine and answers the client.")
    b.until(lambda _: _caught_up(c, *c.nodes), what="followers apply")
    b.stop("Everyone applies", "The next AppendEntries or heartbeat carries the new commit index; the followers "
           "apply the entry too.")


def _check_replication(world: World) -> tuple[bool, str]:
    for frame in world.branch.frames:
        down = [n["id"] for n in frame["nodes"] if not n.get("up") and n["id"] in world.spec.voters]
        for client in frame["clients"]:
            if client["kind"] == "write" and client["status"] == "ok" and client.get("t1") == frame["t"] and down:
                return True, (f"Committed with {', '.join(down)} down: a majority is enough. With two of three "
                              "down, a write waits until one comes back.")
    return False, "Crash one follower (click it, Crash), then write to the leader and play until it answers."


def _join(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) == "n1", what="n1 leads alone")
    b.stop("One server", "n1 was bootstrapped alone: it is a cluster of one voter and leads itself. The seed "
           "demo starts the same way.")
    for i in range(10):
        b.act("write", "n1", key=f"k{i}", value=str(i))
    b.until(lambda _: _settled(c, "n1"), what="writes applied")
    b.stop("Some writes", "n1 commits each write on its own: a majority of one is itself.")
    b.act("add", "n2")
    b.stop("n2 joins as a nonvoter", "n1 adds n2 as a nonvoter (the seed's /join): n2 receives the log but does "
           "not vote and does not count toward a majority until it has caught up, so a slow newcomer cannot stall "
           "the cluster.")
    b.until(_logged(b, "failed to get previous log"), what="previous log not found")
    b.stop("Previous log not found", "n1 sent entries that follow its last index, but n2's log is empty: n2 has "
           "nothing at the previous index, so it refuses (hashicorp's log says \"failed to get previous log\").")
    b.until(_logged(b, "appendEntries rejected, sending older logs"), what="backtracking")
    b.stop("Backtracking", "n1 backs off: it tries again from just past the end of n2's log, which n2's answer "
           "told it.")
    b.until(_logged(b, "pipelining replication"), what="pipelining")
    b.stop("Pipelining", "n2's log now matches n1's. n1 stops probing and streams entries without waiting for each "
           "answer.")
    b.until(lambda _: _caught_up(c, "n2"), what="n2 caught up")
    b.act("promote", "n2")
    b.stop("Promotion", "n2 has caught up, so n1 makes it a voter (raftkv's autopilot does this once a nonvoter "
           "has been stable for a while). From now on a majority is two of two.")
    b.until(lambda _: _raft(c, "n1") is not None and _raft(c, "n1").configuration.is_voter("n2")
            and _raft(c, "n1").committed_configuration.is_voter("n2"), what="n2 a voter")
    b.frames_for(6)


def _check_join(world: World) -> tuple[bool, str]:
    last = world.branch.frames[-1]
    for node in last["nodes"]:
        if node.get("role") == "Leader":
            voters = {m[0] for m in node["members"] if m[1] == "voter"}
            if "n3" in voters:
                return True, "n3 is a voter: three voters now, and a majority is two."
    return False, "Add n3 (click it, Add), let it catch up, then Promote it, and play until the leader lists it."


def _leader_crash(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a leader")
    b.frames_for(6)
    leader = _leader(c)
    b.stop("A working cluster", f"{leader} leads and sends heartbeats.")
    b.act("crash", leader)
    b.stop("The leader crashes", f"{leader} is gone. The followers do not know yet: they only notice that the "
           "heartbeats stop.")
    b.until(lambda _: any(_role(c, i) == "Candidate" for i in c.nodes), what="a candidate")
    b.stop("A timer runs out", "The first follower whose timer runs out campaigns, with a pre-vote first.")
    b.until(lambda _: _leader(c) is not None, what="a new leader")
    b.stop("A new leader", f"With two of three voters alive, one wins a majority: the cluster serves again. "
           f"Everything {leader} had committed is on a majority, so the new leader has it too.")


def _check_leader_crash(world: World) -> tuple[bool, str]:
    crashed = _acted(world, "crash")
    if not crashed:
        return False, "Crash the leader first."
    old = crashed[0].node
    if not any(a.verb == "restart" and a.node == old for a in world.branch.actions):
        return False, f"Restart {old} (click it, Restart) and play."
    last = world.branch.frames[-1]
    view = next(n for n in last["nodes"] if n["id"] == old)
    leaders = [n for n in last["nodes"] if n.get("role") == "Leader"]
    if view.get("role") == "Follower" and leaders and view["term"] == leaders[0]["term"]:
        return True, (f"{old} came back in its old term, heard a newer one from {leaders[0]['id']} and follows it: "
                      "a higher term always wins.")
    return False, f"Play on until {old} has heard from the new leader."


def _split_vote(b: Builder) -> None:
    c = b.cluster
    b.frames_for(0)
    b.stop("Four servers, no pre-vote", "Four voters: a majority is three. Pre-vote is off in this lesson, so "
           "a candidate raises its term at once.")
    b.act("timeout", "n1")
    b.act("timeout", "n2")
    b.stop("Two candidates at once", "n1 and n2 time out together and both ask for votes in term 2, each voting "
           "for itself.")
    b.until(lambda _: all(_raft(c, i).voted_for for i in ("n3", "n4")), what="votes cast")
    b.frames_for(10)
    b.stop("A split vote", "n3 and n4 each granted their one vote of term 2 to whichever request came first. "
           "Neither candidate can reach three votes: term 2 will have no leader.")
    b.until(lambda _: _leader(c) is not None, limit=8000, what="a leader")
    b.stop("Random timeouts break the tie", "Each candidate waits a new random time before trying again; one "
           "tries first in a newer term and wins. Random timers make repeated splits unlikely.")


def _check_split_vote(world: World) -> tuple[bool, str]:
    leaders = _leaders(world.branch.frames)
    if world.branch.parent is not None and leaders and leaders[0][1] == 2:
        return True, f"{leaders[0][0]} won term 2 outright: one candidate at a time, no split."
    return False, "Rewind to the start, time out only one server, and play until someone leads."


def _stale_leader(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a leader")
    old = _leader(c)
    b.act("write", old, key="a", value="1")
    b.until(lambda _: _settled(c, old, *c.nodes), what="a=1 everywhere")
    b.stop("A committed write", f"{old} leads and a=1 is committed on all three.")
    b.act("isolate", old)
    b.act("write", old, key="b", value="2")
    b.act("read", old, key="a")
    b.stop("The leader is cut off", f"{old} is alone behind a partition but still believes it leads. It takes "
           "b=2 into its log and a read of a, but can reach no majority: b=2 cannot commit, and the read's "
           "heartbeat round gets no answers, so it is not served.")
    b.until(lambda _: _role(c, old) != "Leader", limit=8000, what="the old leader steps down")
    b.stop("The old leader steps down", f"{old} has heard from no majority for an election timeout: it steps "
           "down, and its pending requests fail instead of hanging. A leader never serves a read it cannot "
           "confirm with a majority.")
    b.until(lambda _: _leader(c) not in (None, old), limit=8000, what="a new leader")
    new = _leader(c)
    b.stop("A new leader on the majority side", f"{new} wins a newer term with the other server, and writes go on "
           f"there. Had {old} answered reads from its own state meanwhile, a client could have read stale data.")


def _check_stale_leader(world: World) -> tuple[bool, str]:
    old = world.branch.actions[1].node if len(world.branch.actions) > 1 else None
    if not any(a.verb == "heal" for a in world.branch.actions):
        return False, "Heal the partition (click the old leader, Heal) and play."
    last = world.branch.frames[-1]
    view = next((n for n in last["nodes"] if n["id"] == old), None)
    leader = next((n for n in last["nodes"] if n.get("role") == "Leader"), None)
    if view and leader and view.get("role") == "Follower" and view["commit"] >= leader["commit"] - 1:
        return True, (f"{old} hears the newer term and follows; its uncommitted b=2 was replaced by the new "
                      "leader's entries. It was never acknowledged, so nothing a client was told is lost.")
    return False, f"Play on until {old} has caught up with the new leader."


FIGURE_8 = Spec(nodes=("n1", "n2", "n3", "n4", "n5"), voters=("n1", "n2", "n3", "n4", "n5"), seed=7,
                config=RaftConfig(heartbeat_timeout=100_000, election_timeout=100_000, leader_lease_timeout=50_000,
                                  commit_timeout=50, max_append_entries=3, max_inflight=1,
                                  snapshot_threshold=10 ** 6, snapshot_interval=10 ** 9, trailing_logs=4,
                                  snapshot_log_limit=10 ** 6))


def _figure_8(b: Builder) -> None:
    c = b.cluster
    others = ("n2", "n3", "n4", "n5")
    b.act("campaign", "n1")
    b.until(lambda _: _leader(c) == "n1" and _caught_up(c, *c.nodes), what="n1 leads")
    b.stop("Five servers", "n1 leads term 2 over five voters; a majority is three. The timers are slowed down in "
           "this lesson so that only the script decides who campaigns.")
    for peer in ("n3", "n4", "n5"):
        b.act("block", "n1", to=peer)
        b.act("block", peer, to="n1")
    for i in range(6):
        b.act("write", "n1", key=f"k{i}", value=str(i))
    b.until(lambda _: _match(c, "n1", "n2") >= _raft(c, "n1").log.last_index, what="n2 has them")
    b.act("crash", "n1")
    b.stop("(a) Term-2 entries on two servers", "n1 took writes in term 2 but reached only n2 before crashing. "
           "Two of five is not a majority: these entries are not committed.")
    b.act("heal")
    b.act("isolate", "n2")
    b.act("campaign", "n5")
    b.until(lambda _: all(_raft(c, i).voted_for == "n5" for i in ("n3", "n4")), what="n3 and n4 vote for n5")
    for peer in ("n1", "n2", "n3", "n4"):
        b.act("block", "n5", to=peer)
    b.until(lambda _: _role(c, "n5") == "Leader", what="n5 leads")
    b.act("crash", "n5")
    b.stop("(b) n5 leads term 3 and crashes", "n5 won term 3 with votes from n3 and n4 (their logs are no longer "
           "than n5's). It appended its no-op of term 3 at the same index as n1's term-2 entries, then crashed "
           "before sending it anywhere.")
    b.act("heal")
    b.act("block", "n1", to="n4")
    b.act("block", "n4", to="n1")
    b.act("restart", "n1")
    b.act("campaign", "n1")
    b.until(lambda _: _role(c, "n1") == "Leader", what="n1 leads again")
    b.act("block", "n1", to="n3")
    last = _raft(c, "n1").log.last_index
    b.until(lambda _: _match(c, "n1", "n2") >= last, what="n2 matches")
    b.act("unblock", "n1", to="n3")
    b.until(lambda _: _match(c, "n1", "n3") >= 8, what="n3 has the term-2 entries")
    b.stop("(c) A majority holds term-2 entries, uncommitted", "n1 leads term 4 and copies its term-2 entries to "
           "n3: n1, n2 and n3 hold them, a majority. Yet n1 does not commit them: they are from an older term. "
           "The narration cites the line that refuses.")
    for peer in others:
        b.act("block", "n1", to=peer)
    b.act("crash", "n1")
    b.wait_ms(50)   # what n1 still had in flight is lost on the cut links
    b.act("heal")
    b.act("restart", "n5")
    for _ in range(3):   # a term the others already voted in is lost: n5 tries the next
        b.act("campaign", "n5")
        b.wait_ms(200)
        if _role(c, "n5") == "Leader":
            break
    b.until(lambda _: _leader(c) == "n5", what="n5 leads")
    b.stop("(d) Why: n5 wins and overwrites them", "n1 crashed before its term-4 entry spread. n5's last term is 3, "
           "newer than the term-2 entries of n2, n3 and n4, so they vote for it, and n5 replaces those entries "
           "with its own. Had n1 counted replicas and committed them, a committed entry would now be lost.")
    b.until(lambda _: _caught_up(c, "n2", "n3", "n4", "n5"), what="the others follow n5")


def _check_figure_8(world: World) -> tuple[bool, str]:
    for frame in world.branch.frames if world.branch.parent is not None else ():
        for node in frame["nodes"]:
            if node.get("role") == "Leader" and node["id"] == "n1" and node["term"] == 4 and node["commit"] >= 8:
                return True, ("n1's term-4 entry reached a majority, so everything before it committed with it; "
                              "n5 can no longer win, its log is now less up to date than a majority's.")
    return False, ("Rewind to (c), unblock n1's links to n2 and n3 and play until n1 commits (do not crash it), "
                   "then see whether n5 can still win.")


def _snapshot(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a leader")
    leader = _leader(c)
    behind = next(i for i in c.nodes if i != leader)
    b.act("crash", behind)
    for i in range(12):
        b.act("write", leader, key=f"k{i}", value=str(i))
    b.until(lambda _: _settled(c, leader), what="writes committed")
    b.stop("A follower misses writes", f"{behind} is down while {leader} commits twelve writes with the third "
           "server.")
    b.act("snapshot", leader)
    b.until(lambda _: _raft(c, leader).log.base_index > 3, what="the log compacted")
    b.stop("A snapshot", f"{leader} saves its state machine as a snapshot and drops the log entries it covers, "
           "keeping only the last few. Logs would otherwise grow forever.")
    b.act("restart", behind)
    b.until(_logged(b, "installing snapshot on"), what="InstallSnapshot")
    b.stop("InstallSnapshot", f"{behind} comes back needing entries {leader} no longer has. {leader} sends its "
           "snapshot instead (InstallSnapshot).")
    b.until(lambda _: _caught_up(c, *c.nodes), what="caught up")
    b.stop("Caught up", f"{behind} replaced its state with the snapshot, then took the entries after it as usual.")


def _check_snapshot(world: World) -> tuple[bool, str]:
    snaps = [f for f in world.branch.frames[world.branch.forked_at:] if f["event"].get("type") == "Receive"
             and f["event"]["message"]["type"] == "InstallSnapshot"]
    if world.branch.parent is not None and snaps:
        return True, f"{snaps[-1]['node']} received a snapshot: it was too far behind for the log."
    return False, ("Crash another follower, write a few values, take a snapshot on the leader (click it, Snapshot), "
                   "restart the follower and play.")


def _read_index(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a leader")
    leader = _leader(c)
    b.act("write", leader, key="x", value="1")
    b.until(lambda _: _settled(c, leader, *c.nodes), what="x=1 applied")
    b.stop("x=1 is committed", f"{leader} leads; x=1 is committed and applied everywhere.")
    b.act("read", leader, key="x")
    b.stop("A linearizable read", f"The client asks {leader} for x. {leader} could answer from its state machine "
           "right away, but it might have been deposed without knowing. So it notes its commit index as the "
           "read's index and sends a round of heartbeats carrying a read round number.")
    b.until(lambda _: any(r["kind"] == "read" and r["status"] == "ok" for r in b.world._run.requests),
            what="the read served")
    b.stop("Confirmed by a majority", "A majority answered that round: no newer leader existed when the read came "
           "in, so the value at the read index is current. The read costs one round trip and no log entry.")


def _check_read_index(world: World) -> tuple[bool, str]:
    isolated = {a.node for a in world.branch.actions if a.verb == "isolate"}
    for client in world.branch.frames[-1]["clients"]:
        if client["kind"] == "read" and client["node"] in isolated and client["status"] != "ok":
            return True, ("The cut-off leader cannot get a majority to answer its heartbeat round, so it never "
                          "serves the read: it might be stale.")
    return False, "Cut the leader off (Partition), send it a read, and play for a while."


def _transfer(b: Builder) -> None:
    c = b.cluster
    b.until(lambda _: _leader(c) is not None and _caught_up(c, *c.nodes), what="a leader")
    leader = _leader(c)
    target = next(i for i in sorted(c.nodes) if i != leader)
    b.stop("A leader", f"{leader} leads. An operator wants {target} to lead instead (before restarting "
           f"{leader}'s machine, say).")
    b.act("transfer", target)
    b.stop("Transfer starts", f"{leader} stops taking new writes and makes sure {target} has every entry.")
    b.until(lambda _: any(m["type"] == "TimeoutNow" for f in b.world.branch.frames[-1:] for m in f["flight"]),
            what="TimeoutNow")
    b.stop("TimeoutNow", f"{target} is up to date: {leader} tells it to campaign now.")
    b.until(lambda _: _leader(c) == target, what="the target leads")
    b.stop("A new leader, no waiting", f"{target} campaigned at once, without pre-vote; the others granted their "
           "votes though they had a leader, because the request said it was a transfer.")


def _check_transfer(world: World) -> tuple[bool, str]:
    transfers = _acted(world, "transfer")
    if len(transfers) < 2:
        return False, "Transfer leadership again, to the third server (click it, then Transfer)."
    target = transfers[-1].node
    if any(n.get("role") == "Leader" and n["id"] == target for n in world.branch.frames[-1]["nodes"]):
        return True, f"{target} leads now."
    return False, f"Play until {target} leads."


def _lesson(name, title, summary, spec, script, try_it, checker) -> Lesson:
    return Lesson(name, title, summary, spec, script, try_it, checker)


THREE = Spec(seed=1)
LESSONS.update((lesson.name, lesson) for lesson in [
    _lesson("first-election", "The first election, with pre-vote",
            "Timers, pre-votes, votes and a leader.", THREE, _first_election,
            "Rewind to just before the leader wins, drop the votes on their way to it (click each "
            "RequestVoteResponse arrow), and play. Who wins now?", _check_first_election),
    _lesson("replication", "Replication and commit",
            "A write goes to a majority's disks before it is acknowledged.", THREE, _replication,
            "Crash one follower, then write to the leader. Is the write acknowledged?", _check_replication),
    _lesson("join", "Joining: nonvoter, backtracking, pipelining, promotion",
            "The seed demo's join, step by step.", Spec(voters=("n1",), seed=3), _join,
            "Add n3 the same way and promote it once it has caught up.", _check_join),
    _lesson("leader-crash", "Leader crash and re-election",
            "The heartbeats stop; a follower takes over.", THREE, _leader_crash,
            "Restart the old leader. What does it become?", _check_leader_crash),
    _lesson("split-vote", "A split vote",
            "Two candidates at once, and how random timers end it.",
            Spec(nodes=("n1", "n2", "n3", "n4"), voters=("n1", "n2", "n3", "n4"), seed=3, pre_vote=False),
            _split_vote, "Rewind to the start and time out only one server. Does the vote split?",
            _check_split_vote),
    _lesson("stale-leader", "A stale leader in a partition",
            "Why a cut-off leader's reads and writes are refused.", THREE, _stale_leader,
            "Heal the partition. What happens to the old leader and its uncommitted write?", _check_stale_leader),
    _lesson("figure-8", "Figure 8: never commit an old term's entry by counting",
            "A majority holds an entry, and it still is not committed.", FIGURE_8, _figure_8,
            "Rewind to (c) and let n1 commit an entry of its own term before anything crashes. Can n5 still "
            "win?", _check_figure_8),
    _lesson("snapshot", "Snapshots and InstallSnapshot",
            "Compacting the log, and catching up a follower from a snapshot.", THREE, _snapshot,
            "Do it again with another follower: crash it, write, snapshot the leader, restart it.", _check_snapshot),
    _lesson("read-index", "A linearizable read (ReadIndex)",
            "A read confirmed by a heartbeat round, without a log entry.", THREE, _read_index,
            "Cut the leader off and read from it again. Is the read served?", _check_read_index),
    _lesson("leadership-transfer", "Leadership transfer",
            "Handing over leadership without waiting for a timeout.", THREE, _transfer,
            "Transfer leadership once more, to the third server.", _check_transfer),
])
