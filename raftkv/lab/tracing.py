"""The lab's view of a simulated run: its steps, the learner's calls, and the
rules a call's answer must keep.

Theory of operation: while the grader runs, :func:`installed` puts the
learner's rules into every node (``RaftNode.rules``, as the simulator builds
its nodes itself) and wraps the simulator's ``step`` so that each step is
recorded, lazily, in a bounded :class:`Trace`: the event, the messages it
sent (heartbeats left out), the learner's calls made during it with their
arguments and results (marked ``>>>``), and the node's state after it. A
call's answer is also checked against the rule it implements where a
mistake would hurt only rarely in a run (a timer restarted, a stale leader
followed, a matching entry truncated, a commit past what was proven): a
breach raises :class:`~raftkv.sim.invariants.Violation` inside the step, as
the invariant checker does.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from collections.abc import Iterator

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft import rules as rl
from raftkv.raft.durability import PersistDecision
from raftkv.raft.node import RaftNode
from raftkv.sim.cluster import SimCluster
from raftkv.sim.invariants import Violation
from raftkv.sim.scenarios import describe_message

MARK = ">>>"


class NotWritten(Exception):
    """The learner's function still raises NotImplementedError."""


class LearnerError(Exception):
    """The learner's function raised, or returned something the core cannot use."""


class Trace:
    def __init__(self, keep: int = 60) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.node = "?"
        self._header: str | None = None

    def begin(self, cluster: SimCluster, node_id: str, event, label: str | None) -> None:
        self.node = node_id
        self._header = f"t={cluster.now}ms {node_id}: {label or _describe_event(event)}"

    def add(self, line: str) -> None:
        if self._header is not None:
            self.lines.append(self._header)
            self._header = None
        self.lines.append(line)

    def end(self, cluster: SimCluster, node_id: str, effects: list) -> None:
        changed = False
        for effect in effects:
            t = type(effect)
            if t is fx.Send and not getattr(effect.message, "heartbeat", False):
                self.add(f"    {node_id} -> {effect.to}: {describe_message(effect.message)}")
            elif t in (fx.AppendToLog, fx.TruncateLog, fx.PersistHardState, fx.StateChanged, fx.Apply,
                       fx.RestoreSnapshot):
                changed = True
        if changed:
            self.add(f"      {cluster.describe_node(cluster.nodes[node_id])}")
        self._header = None

    def state(self, cluster: SimCluster) -> None:
        for node in cluster.nodes.values():
            if node.alive or node.incarnation:
                self.add(f"      {cluster.describe_node(node)}")


def _describe_event(event) -> str:
    if isinstance(event, ev.Receive):
        return f"receives from {event.from_id}: {describe_message(event.message)}"
    return type(event).__name__


def _short(value) -> str:
    if isinstance(value, tuple) and value and hasattr(value[0], "index") and hasattr(value[0], "term"):
        return "[" + " ".join(f"{e.index}@{e.term}" for e in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = ", ".join(f"{f.name}={_short(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({inner})"
    if isinstance(value, str):
        return repr(value)
    return repr(value) if not isinstance(value, tuple) else "(" + ", ".join(map(_short, value)) + ")"


# ---------------------------------------------------------------- checks on a call's answer

def _check_vote(req: rl.VoteRequest | rl.PreVoteRequest, out: rl.VoteDecision | rl.PreVoteDecision) -> None:
    pre_vote = isinstance(req, rl.PreVoteRequest)
    if out.restart_timer and not (out.granted and not pre_vote):
        raise Violation("Election timer restarted without cause",
                        f"{'grant_pre_vote' if pre_vote else 'grant_vote'} restarted the election timer for a "
                        f"{'pre-vote' if pre_vote else 'vote'} it {'granted' if out.granted else 'refused'} "
                        f"({req.candidate}, term {req.term}). A "
                        "follower restarts its timer only when it hears from the current leader or grants a "
                        "vote (§5.2): a stale candidate that keeps asking would otherwise keep the servers "
                        "that could win from ever campaigning")


def _check_pre_vote(req: rl.PreVoteRequest, out: rl.PreVoteDecision) -> None:
    if out.enter_term and req.term > req.current_term:
        raise Violation("Pre-vote changed the term",
                        f"grant_pre_vote moved the node from term {req.current_term} to the candidate's term "
                        f"{req.term}. A pre-vote is a question and enters no term (thesis §9.6): a server cut "
                        "off from the others would otherwise raise every term it asks, and depose a working "
                        "leader when it comes back")
    if out.granted and req.leader_heard:
        raise Violation("Pre-vote granted while a leader is heard",
                        f"grant_pre_vote granted {req.candidate}'s pre-vote for term {req.term} while this node "
                        "hears from a leader. A server that hears its leader would not vote either (thesis "
                        "§9.6, §4.2.3): the pre-vote would let a server that was cut off start an election "
                        "and depose the working leader")
    newer = (req.candidate_last_log_term, req.candidate_last_log_index) >= (req.last_log_term, req.last_log_index)
    if out.granted and not newer:
        raise Violation("Pre-vote granted to a stale log",
                        f"grant_pre_vote granted {req.candidate}'s pre-vote with its last entry "
                        f"{req.candidate_last_log_index}@{req.candidate_last_log_term} behind this node's "
                        f"{req.last_log_index}@{req.last_log_term}. A pre-vote answers whether the real vote "
                        "would be given, and that needs the up-to-date check (§5.4.1, thesis §9.6)")
    _check_vote(req, out)


def _check_not_stale_leader(req: rl.SnapshotRequest | rl.AppendRequest,
                            out: rl.SnapshotDecision | rl.AppendDecision, function: str, rpc: str,
                            rule: str) -> None:
    if out.accept_leader and req.term < req.current_term:
        raise Violation("Followed a stale leader",
                        f"{function} accepted {req.leader} of term {req.term} as leader while the "
                        f"follower is in term {req.current_term}: an {rpc} of an older term is "
                        f"refused, and its sender is no leader ({rule})")


def _check_snapshot(req: rl.SnapshotRequest, out: rl.SnapshotDecision) -> None:
    _check_not_stale_leader(req, out, "install_snapshot", "InstallSnapshot", "Figure 13 step 1")
    matches = (req.snapshot_index <= req.log.last_index
               and req.log.term_at(req.snapshot_index) == req.snapshot_term)
    if out.install and out.keep_log_suffix and not matches:
        ours = req.log.term_at(req.snapshot_index)
        raise Violation("Kept entries that conflict with the snapshot",
                        f"install_snapshot kept the log after index {req.snapshot_index}, where the follower "
                        f"holds {'no entry' if ours is None else f'an entry of term {ours}'} and the snapshot "
                        f"ends with one of term {req.snapshot_term}. Entries after a conflicting (or missing) "
                        "entry came from a leader whose log the snapshot contradicts: the whole log is "
                        "discarded (Figure 13 step 7)")
    if out.install and not out.keep_log_suffix and matches and req.log.last_index > req.snapshot_index:
        raise Violation("Discarded entries that followed a matching snapshot",
                        f"install_snapshot dropped the whole log, entries {req.snapshot_index + 1}.."
                        f"{req.log.last_index} included, although the log holds the snapshot's last entry "
                        f"({req.snapshot_index}@{req.snapshot_term}). Those entries match the leader's and "
                        "may already be acknowledged: they are retained (Figure 13 step 6)")


def _check_append(req: rl.AppendRequest, out: rl.AppendDecision) -> None:
    _check_not_stale_leader(req, out, "append_entries", "AppendEntries", "§5.1")
    if not out.success:
        return
    if out.truncate_from is not None:
        entry = next((e for e in req.entries if e.index == out.truncate_from), None)
        ours = req.log.term_at(out.truncate_from)
        if entry is None or ours is None or ours == entry.term:
            raise Violation("Truncated entries that matched",
                            f"append_entries truncated the log from index {out.truncate_from}, where the "
                            f"follower's entry (term {ours}) does not conflict with the request's "
                            f"({'none' if entry is None else f'term {entry.term}'}). Only a conflicting "
                            "entry and those after it are deleted (§5.3): a delayed, older AppendEntries "
                            "would otherwise cut off entries the follower already acknowledged")
    last_new = req.prev_log_index + len(req.entries)
    if out.commit_index > max(req.commit_index, min(req.leader_commit, last_new)):
        raise Violation("Committed past the last new entry",
                        f"append_entries moved the commit index to {out.commit_index}, beyond "
                        f"min(leader_commit={req.leader_commit}, last new entry={last_new}). Entries after "
                        "the last new one were not checked against the leader's log and may be a stale "
                        "suffix (Figure 2, AppendEntries step 5)")


def _check_progress(req: rl.ProgressRequest, out: rl.ProgressDecision) -> None:
    known = max(req.match_index, req.acknowledged) if req.success else req.match_index
    if out.match_index > known:
        raise Violation("Match index beyond what the follower acknowledged",
                        f"follower_progress set match_index to {out.match_index} after "
                        f"{'a success acknowledging ' + str(req.acknowledged) if req.success else 'a rejection'}"
                        f" (it was {req.match_index}). The leader commits what a majority's match indexes "
                        "reach, so a match index above what the follower holds can commit an entry a "
                        "majority does not have (Figure 2, Leaders; §5.3)")


CHECKS = {"grant_vote": _check_vote, "append_entries": _check_append, "follower_progress": _check_progress,
          "grant_pre_vote": _check_pre_vote, "install_snapshot": _check_snapshot}

# what each function must return for the core to use it
RETURNS = {"grant_vote": rl.VoteDecision, "append_entries": rl.AppendDecision, "leader_commit_index": int,
           "persist_before_send": PersistDecision, "follower_progress": rl.ProgressDecision,
           "grant_pre_vote": rl.PreVoteDecision, "install_snapshot": rl.SnapshotDecision,
           "read_index": rl.ReadDecision}


def wrap(rules: rl.Rules, names: tuple[str, ...], trace: Trace) -> rl.Rules:
    """``rules`` with the functions ``names`` recorded into ``trace`` and checked."""
    wrapped = {}
    for name in names:
        fn = getattr(rules, name)
        check, expected = CHECKS.get(name), RETURNS.get(name)

        def call(req, fn=fn, name=name, check=check, expected=expected):
            try:
                out = fn(req)
            except NotImplementedError as exc:
                raise NotWritten(f"{name} raised NotImplementedError({exc})") from exc
            except Exception as exc:
                trace.add(f"  {MARK} {trace.node} {name}({_short(req)}) raised {type(exc).__name__}: {exc}")
                raise LearnerError(f"{name} raised {type(exc).__name__}: {exc}") from exc
            trace.add(f"  {MARK} {trace.node} {name}({_short(req)})")
            trace.add(f"  {MARK}   returned {_short(out)}")
            if expected is not None and not isinstance(out, expected):
                raise LearnerError(f"{name} returned {out!r}; it must return a {expected.__name__}")
            if check is not None:
                check(req, out)
            return out
        wrapped[name] = call
    return dataclasses.replace(rules, **wrapped)


@contextlib.contextmanager
def installed(rules: rl.Rules, trace: Trace) -> Iterator[None]:
    """Every node built meanwhile decides by ``rules``; every step goes into ``trace``."""
    step = SimCluster.step

    def traced_step(cluster, node_id, event, label=None):
        if not cluster.nodes[node_id].alive:
            return step(cluster, node_id, event, label)
        trace.begin(cluster, node_id, event, label)
        try:
            effects = step(cluster, node_id, event, label)
        except (Violation, NotWritten, LearnerError):
            trace.state(cluster)
            raise
        trace.end(cluster, node_id, effects)
        return effects

    saved = RaftNode.rules
    RaftNode.rules = rules
    SimCluster.step = traced_step  # type: ignore[method-assign]
    try:
        yield
    finally:
        RaftNode.rules = saved
        SimCluster.step = step  # type: ignore[method-assign]
