"""Narration: what a step of a Raft core did and why, in one or two plain sentences.

Theory of operation: every decision the core makes that a learner should see
either logs a line (hashicorp's wording: "rejecting vote request since our last
term is greater") or shows in the effects it returns (a granted vote, an
accepted append, a commit index that moved). A :class:`Rule` names such a
decision: where the paper states it (``paper``: a section or figure of the
extended Raft paper, or of Ongaro's thesis) and the line of the core that makes
it (``function`` in ``file``, at the line holding ``snippet``). :func:`narrate`
reads one step (the node, the event, the effects, the node's picture before
and after, :mod:`raftkv.learn.picture`) and returns its sentences, each with
its citation resolved to ``file:line``.

Lines are found in the source when first asked for (:func:`locate`), with the
``ast`` module: the function's first and last line bound the search, so an
edit elsewhere in the file never makes a citation point at the wrong line, and
a snippet that left its function fails the test that resolves every rule
(``tests/learn/test_narration.py``) instead of citing nonsense.
"""

from __future__ import annotations

import ast
import functools
import pathlib
from dataclasses import dataclass

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

from .picture import node_view

__all__ = ["RULES", "Rule", "locate", "narrate", "narrate_fsync", "source_excerpt"]

PACKAGE = pathlib.Path(__file__).resolve().parent.parent   # raftkv/
REPO = PACKAGE.parent

PAPER = "In Search of an Understandable Consensus Algorithm (extended version), Ongaro & Ousterhout"
THESIS = "Consensus: Bridging Theory and Practice, Ongaro (PhD thesis)"


@dataclass(frozen=True)
class Rule:
    paper: str        # "§5.2", "Figure 8", "thesis §9.6"
    file: str         # under raftkv/raft/, e.g. "election.py"
    function: str     # "Election._on_request_vote"
    snippet: str      # text on the deciding line
    nth: int = 1      # which occurrence of the snippet inside the function

    @property
    def path(self) -> str:
        return f"raftkv/raft/{self.file}"

    def cite(self) -> dict:
        line = locate(self)
        return {"paper": self.paper, "source": f"{self.path}:{line}", "function": self.function}


@functools.lru_cache(maxsize=None)
def _functions(path: str) -> dict[str, tuple[int, int]]:
    """Qualified name -> (first line, last line) of every function in a file."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    found: dict[str, tuple[int, int]] = {}

    def walk(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[f"{prefix}{child.name}"] = (child.lineno, child.end_lineno or child.lineno)
                walk(child, f"{prefix}{child.name}.")
    walk(tree, "")
    return found


@functools.lru_cache(maxsize=None)
def _lines(path: str) -> tuple[str, ...]:
    return tuple((REPO / path).read_text(encoding="utf-8").splitlines())


def function_span(path: str, function: str) -> tuple[int, int]:
    span = _functions(path).get(function)
    if span is None:
        raise LookupError(f"{path} has no function {function}")
    return span


@functools.lru_cache(maxsize=None)
def locate(rule: Rule) -> int:
    """The 1-based line of ``rule.snippet`` inside ``rule.function``."""
    first, last = function_span(rule.path, rule.function)
    seen = 0
    lines = _lines(rule.path)
    for number in range(first, last + 1):
        if rule.snippet in lines[number - 1]:
            seen += 1
            if seen == rule.nth:
                return number
    raise LookupError(f"{rule.path}: {rule.function} has no line with {rule.snippet!r} (occurrence {rule.nth})")


def source_excerpt(path: str, line: int, context: int = 12) -> dict:
    """The function around ``path:line`` for the page's source view; only
    files of the Raft core can be asked for."""
    resolved = (REPO / path).resolve()
    if resolved.parent != PACKAGE / "raft" or resolved.suffix != ".py" or not resolved.is_file():
        raise LookupError(f"{path} is not a file of the Raft core")
    lines = _lines(f"raftkv/raft/{resolved.name}")
    if not 1 <= line <= len(lines):
        raise LookupError(f"{path} has no line {line}")
    span = next(((a, b) for a, b in _functions(f"raftkv/raft/{resolved.name}").values() if a <= line <= b
                 and b - a < 80), (line - context, line + context))
    lo, hi = max(1, span[0]), min(len(lines), span[1])
    return {"path": f"raftkv/raft/{resolved.name}", "line": line, "first": lo,
            "lines": list(lines[lo - 1:hi])}


def R(paper: str, file: str, function: str, snippet: str, nth: int = 1) -> Rule:
    return Rule(paper, file, function, snippet, nth)


# Every rule the narrator cites; the test resolves them all.
RULES: dict[str, Rule] = {
    # elections
    "timeout": R("§5.2", "election.py", "Election._election_timeout", "heartbeat timeout reached, starting election"),
    "restart-election": R("§5.2", "election.py", "Election._election_timeout",
                          "Election timeout reached, restarting election"),
    "not-eligible": R("§6", "election.py", "Election._eligible_for_election", "not part of a stable configuration"),
    "candidate": R("§5.2", "election.py", "Election._start_campaign", "entering candidate state"),
    "pre-vote-won": R("thesis §9.6", "election.py", "Election._count_vote", "pre-vote successful, starting election"),
    "pre-vote-lost": R("thesis §9.6", "election.py", "Election._count_vote", "pre-vote campaign failed"),
    "pre-vote-counted": R("thesis §9.6", "election.py", "Election._count_vote",
                          "candidate.record(voter, resp.granted)"),
    "vote-counted": R("§5.2", "election.py", "Election._count_vote", "candidate.record(voter, resp.granted)", 2),
    "late-vote": R("§5.2", "election.py", "Election._on_vote_response",
                   "if candidate is None or resp.pre_vote != candidate.pre_vote:"),
    "won": R("§5.2", "election.py", "Election._count_vote", '"election won"'),
    "leader": R("§5.4.2, §8", "node.py", "RaftNode._become_leader", "entering leader state"),
    "refuse-term": R("§5.4.1", "election.py", "Election._explain_vote", "since our last term is greater"),
    "refuse-index": R("§5.4.1", "election.py", "Election._explain_vote", "since our last index is greater"),
    "refuse-leader": R("§6", "election.py", "Election._on_request_vote", "since we have a leader"),
    "refuse-stranger": R("§6", "election.py", "Election._on_request_vote", "since node is not in configuration"),
    "refuse-nonvoter": R("§6", "election.py", "Election._on_request_vote", "since node is not a voter"),
    "refuse-amnesia": R("Figure 2 (persistent state)", "election.py", "Election._on_request_vote",
                        "rejecting {kind} request since {amnesia}"),
    "refuse-stale": R("§5.1", "rules.py", "grant_vote", "if req.term < req.current_term:"),
    "refuse-voted": R("§5.2", "election.py", "Election._explain_vote", "duplicate requestVote for same term"),
    "grant-vote": R("§5.2, §5.4.1", "election.py", "Election._on_request_vote",
                    "self._set_hard_state(self.current_term, req.candidate_id)"),
    "grant-pre-vote": R("thesis §9.6", "election.py", "Election._on_request_vote", "grant = decision.granted"),
    "timeout-now": R("thesis §3.10", "election.py", "Election._on_timeout_now",
                     "received TimeoutNow, starting election"),
    # terms
    "newer-term": R("§5.1", "node.py", "RaftNode._on_receive", "self._become_follower(msg.term"),
    "newer-term-vote": R("§5.1", "election.py", "Election._on_request_vote",
                         "lost leadership because received a requestVote with a newer term"),
    "check-quorum": R("thesis §6.2", "replication.py", "Replication._check_lease", "failed to contact quorum of nodes"),
    # replication, follower side
    "stale-append": R("§5.1", "following.py", "Following._on_append_entries", "if stale:"),
    "heartbeat": R("§5.2", "following.py", "Following._on_append_entries", "if req.heartbeat or decision is None:"),
    "no-prev": R("§5.3", "following.py", "Following._on_append_entries", "failed to get previous log"),
    "prev-mismatch": R("§5.3", "following.py", "Following._on_append_entries", "previous log term mis-match"),
    "append-ok": R("§5.3, Figure 2", "following.py", "Following._on_append_entries",
                   "self._reply_append(from_id, req, True, decision.match_index)"),
    "fsync-leader": R("thesis §10.2.1", "replication.py", "Replication._maybe_commit",
                      "leader.match_indexes(self.configuration.voters, self.id, self.log.last_index"),
    "clear-suffix": R("§5.3", "following.py", "Following._merge_entries", "clearing log suffix"),
    "follower-commit": R("§5.3", "following.py", "Following._on_append_entries",
                         "self._commit_to(decision.commit_index)"),
    "heartbeat-commit": R("§5.3", "following.py", "Following._on_append_entries",
                          "self._commit_to(min(req.leader_commit, self.log.last_index))"),
    "install-snapshot": R("§7", "following.py", "Following._install_snapshot", "Installed remote snapshot"),
    # replication, leader side
    "propose": R("§5.3", "client_requests.py", "ClientRequests._propose", "self._append_as_leader(entries)"),
    "not-leader": R("§8", "client_requests.py", "ClientRequests._not_leader", "RejectReason.NOT_LEADER"),
    "rejected": R("§8", "node.py", "RaftNode._reject", "fx.Rejected("),
    "send-heartbeats": R("§5.2", "replication.py", "Replication._heartbeat", "self._send_heartbeat("),
    "backtrack": R("§5.3", "replication.py", "Replication._on_append_response",
                   "appendEntries rejected, sending older logs"),
    "pipeline": R("§5.3", "replication.py", "Replication._on_append_response", '"pipelining replication"'),
    "heartbeat-ack": R("thesis §6.2", "replication.py", "Replication._on_append_response",
                       "pr.last_contact = self.now"),
    "acked": R("§5.3", "replication.py", "Replication._on_append_response", "moved = pr.acknowledge("),
    "commit": R("§5.3, §5.4.2", "replication.py", "Replication._maybe_commit", "self._advance_commit(leader, index)"),
    "figure-8": R("Figure 8, §5.4.2", "replication.py", "Replication._can_commit_by_counting",
                  "return self.log.term_at(index) == self.current_term"),
    "snapshot-acked": R("§7", "replication.py", "Replication._on_install_snapshot_response",
                        "pr.acknowledge(max(pr.match_index, resp.last_index)"),
    "snapshot-failed": R("§7", "replication.py", "Replication._on_snapshot_send_failed", "failed to send snapshot to"),
    "stale-answer": R("§5.1", "replication.py", "Replication._on_append_response",
                      "if leader is None or resp.term < self.current_term:"),
    "send-snapshot": R("§7", "replication.py", "Replication._send_snapshot", "installing snapshot on"),
    "snapshot-start": R("§7", "snapshots.py", "Snapshots._take_snapshot", "starting snapshot up to"),
    "snapshot-done": R("§7", "snapshots.py", "Snapshots._on_snapshot_taken", "snapshot complete up to"),
    # reads
    "read-index": R("§8", "client_requests.py", "ClientRequests._confirm_read",
                    "if leader.read_only.add(request_id"),
    "read-ready": R("§8", "client_requests.py", "ClientRequests._answer_read", "self._emit(fx.ReadReady("),
    # read leases (LeaseGuard, Davis, Demirbas and Deng, SIGMOD 2026)
    "lease-read": R("LeaseGuard §3", "client_requests.py", "ClientRequests._on_read_index",
                    "self._emit(fx.ReadReady(event.request_id, self.commit_index))"),
    "lease-renew": R("LeaseGuard §3", "client_requests.py", "ClientRequests._lease_holds",
                     "lease.renewal = self.log.last_index + 1"),
    "lease-granted": R("LeaseGuard §3", "replication.py", "Replication._advance_commit",
                       "leader.lease.committed(index, self.lease_rules)"),
    "lease-deferred": R("LeaseGuard §4", "node.py", "RaftNode._become_leader",
                        "wait_until = rules.inherited_until(self.last_leader_append)"),
    "lease-over": R("LeaseGuard §4", "replication.py", "Replication._leader_tick",
                    "the previous leader's read lease has expired, committing"),
    "lease-handover": R("LeaseGuard §4", "replication.py", "Replication._maybe_send_timeout_now", "lease.end()"),
    # membership and leadership transfer
    "configuration": R("§6, thesis §4.1", "client_requests.py", "ClientRequests._change_membership",
                       '"updating configuration"'),
    "transfer": R("thesis §3.10", "client_requests.py", "ClientRequests._on_transfer_leadership",
                  '"starting leadership transfer"'),
    "send-timeout-now": R("thesis §3.10", "replication.py", "Replication._maybe_send_timeout_now",
                          "self._send(peer_id, TimeoutNow("),
    "start": R("Figure 2 (persistent state)", "node.py", "RaftNode.start", "def start"),
    "bootstrap": R("thesis §4.1", "client_requests.py", "ClientRequests._bootstrap", "def _bootstrap"),
}


def _fields(effect: fx.Log) -> dict[str, str]:
    return {k: str(v) for k, v in effect.fields}


def _server_id(text: str) -> str:
    # a Server prints as "{Voter n2 127.0.0.1:9001}"
    parts = text.strip("{}").split()
    return parts[1] if len(parts) >= 2 else text


def _span(entries) -> str:
    if not entries:
        return "nothing"
    first, last = entries[0].index, entries[-1].index
    return f"entry {first}" if first == last else f"entries {first}..{last}"


class _Story:
    def __init__(self) -> None:
        self.sentences: list[dict] = []

    def say(self, key: str, text: str) -> None:
        if any(s["text"] == text for s in self.sentences):
            return
        self.sentences.append({"text": text, **RULES[key].cite()})


def narrate(node_id: str, event, effects, before: dict | None, after: dict | None, core=None) -> list[dict]:
    """The sentences for one step: ``[{"text", "paper", "source", "function"}]``,
    most important first. ``before``/``after`` are the node's
    :func:`~raftkv.learn.picture.node_view` (``before`` None on a start);
    ``core`` (the simulator's RaftNode, optional) lets the narrator say why a
    commit did *not* happen."""
    story = _Story()
    n = node_id
    logs = [e for e in effects if type(e) is fx.Log]
    sends = [e for e in effects if type(e) is fx.Send]
    after = after or {}
    before = before or {}

    for log in logs:
        _narrate_log(story, n, log, event, after)

    t = type(event)
    if event is None:
        story.say("start", f"{n} starts from what its disk holds: term {after.get('term')}, its vote and its log "
                           f"up to {after.get('last')}. It does not know what is committed until a leader tells it.")
    elif t is ev.Receive:
        _narrate_receive(story, n, event, sends, before, after, core)
    elif t is ev.Propose or t is ev.ProposeBatch:
        proposed = [e for e in effects if type(e) is fx.Proposed]
        if proposed:
            p = proposed[0]
            story.say("propose", f"{n} leads, so it appends the write at index {p.index} (term {p.term}) and sends it "
                                 "to its followers. It answers the client once a majority holds it.")
    elif t is ev.ReadIndex:
        if event.lease and any(type(e) is fx.ReadReady for e in effects):
            story.say("lease-read", f"{n} holds a read lease: it serves the read at once at its commit index "
                                    f"{after.get('commit')}, with no heartbeat round.")
            return story.sentences
        if any(type(s.message) is AppendEntries and s.message.heartbeat for s in sends):
            story.say("read-index", f"{n} notes its commit index {after.get('commit')} as the read's index and "
                                    "sends a round of heartbeats: if a majority answers, no newer leader exists "
                                    "and the read cannot be stale.")
    elif t is ev.Bootstrap:
        voters = ", ".join(s.id for s in event.configuration.servers)
        story.say("bootstrap", f"{n} writes the first configuration into its log: voters {voters}.")
    elif t is ev.Tick:
        if after.get("role") == "Leader" and any(type(s.message) is AppendEntries and s.message.heartbeat
                                                 for s in sends):
            story.say("send-heartbeats", f"{n} sends heartbeats: the followers hear it still leads and restart "
                                         "their election timers.")

    for effect in effects:
        te = type(effect)
        if te is fx.Rejected:
            rule = "not-leader" if effect.reason.name == "NOT_LEADER" else "rejected"
            story.say(rule, f"{n} refuses the request: {effect.error}"
                      + (f"; the leader is {effect.leader_id}." if effect.leader_id else "."))
        elif te is fx.ReadReady:
            story.say("read-ready", f"A majority answered {n}'s heartbeat round: it is still the leader, so the "
                                    f"read is served from its state machine once it has applied index {effect.index}.")
        elif te is fx.Send and type(effect.message) is TimeoutNow:
            story.say("send-timeout-now", f"{effect.to} holds everything {n} has: {n} tells it to campaign now "
                                          "(TimeoutNow).")

    leading = after.get("role") == "Leader" and before.get("role") == "Leader"
    if leading and after.get("commit", 0) > before.get("commit", 0):
        story.say("commit", f"{n} commits up to index {after['commit']}: a majority of voters holds it and it is "
                            "from the leader's own term. Committed entries are applied and the clients answered.")
    elif after.get("role") == "Leader" and core is not None and t is ev.Receive:
        _figure_8(story, n, core)

    if not story.sentences:
        return []
    return story.sentences[:2]


def _narrate_log(story: _Story, n: str, log: fx.Log, event, after: dict) -> None:
    m, f = log.message, _fields(log)
    if m == "heartbeat timeout reached, starting election":
        story.say("timeout", f"{n} heard from no leader before its election timer ran out.")
    elif m == "Election timeout reached, restarting election":
        story.say("restart-election", f"No one won before {n}'s timer ran out again (a split vote, or lost "
                                      "messages): it tries again, after a new random timeout.")
    elif m.startswith("heartbeat timeout reached, not part of a stable configuration"):
        story.say("not-eligible", f"{n}'s timer ran out, but it is not a voter: it does not campaign.")
    elif m == "entering candidate state":
        if type(event) is ev.Receive and type(event.message) is TimeoutNow:
            return  # told by the "timeout-now" sentence
        story.say("candidate", f"{n} becomes a candidate. With pre-vote it first asks whether the others would "
                               f"vote for it in term {f.get('term')}, without raising its own term yet.")
    elif m == "pre-vote successful, starting election":
        story.say("pre-vote-won", f"A majority would vote for {n} ({f.get('tally')} of {f.get('votesNeeded')} "
                                  f"needed): it raises its term to {f.get('term')}, votes for itself and asks "
                                  "for real votes.")
    elif m == "pre-vote campaign failed, waiting for election timeout":
        story.say("pre-vote-lost", f"Too many refused {n} a pre-vote: it waits for its timer. Its term never "
                                   "rose, so it disturbed no one.")
    elif m == "election won":
        story.say("won", f"{n} has votes from a majority ({f.get('tally')}): it is the leader of term "
                         f"{f.get('term')}.")
    elif m == "entering leader state":
        story.say("leader", f"{n} leads. It appends a no-op entry of its term: once that commits, it knows "
                            "which entries before it are committed too.")
    elif "since our last term is greater" in m:
        story.say("refuse-term", f"{n} refuses: its log is more up to date (last term {f.get('last-term')} > "
                                 f"{f.get('last-candidate-term')}).")
    elif "since our last index is greater" in m:
        story.say("refuse-index", f"{n} refuses: same last term, but its log is longer ({f.get('last-index')} > "
                                  f"{f.get('last-candidate-index')}).")
    elif "since we have a leader" in m:
        story.say("refuse-leader", f"{n} refuses: it heard from leader {f.get('leader-id')} within an election "
                                   "timeout, so the candidate would only disrupt a working leader.")
    elif "since node is not in configuration" in m:
        story.say("refuse-stranger", f"{n} refuses: the candidate is not a member of the cluster.")
    elif "since node is not a voter" in m:
        story.say("refuse-nonvoter", f"{n} refuses: the candidate is a nonvoter.")
    elif m.startswith("rejecting") and "request since" in m:
        story.say("refuse-amnesia", f"{n} refuses: {m.split('since', 1)[1].strip()}.")
    elif m == "duplicate requestVote for same term":
        story.say("refuse-voted", f"{n} already voted in term {f.get('term')}, for {after.get('vote')}: "
                                  "one vote per term.")
    elif m == "received TimeoutNow, starting election":
        story.say("timeout-now", f"{n} was told to take over (TimeoutNow): it campaigns at once, without pre-vote, "
                                 "and the others vote though they have a leader.")
    elif m == "lost leadership because received a requestVote with a newer term":
        story.say("newer-term-vote", f"{n} sees a newer term in the request: it adopts it and becomes a follower.")
    elif m in ("newer term discovered, fallback to follower", "peer has newer term, stopping replication",
               "pre-vote denied: found newer term, falling back to follower"):
        story.say("newer-term", f"{n} learns of a newer term: it steps down and follows.")
    elif m == "failed to contact quorum of nodes, stepping down":
        story.say("check-quorum", f"{n} has not heard from a majority for an election timeout: it steps down, "
                                  "so a leader cut off in a minority stops acting as one.")
    elif m == "failed to get previous log":
        story.say("no-prev", f"{n} refuses the entries: it has nothing at index {f.get('previous-index')} "
                             f"(its log ends at {f.get('last-index')}), so it cannot check that they continue "
                             "its log.")
    elif m == "previous log term mis-match":
        story.say("prev-mismatch", f"{n} refuses: its entry before the new ones is from term {f.get('ours')}, "
                                   f"the leader's from term {f.get('remote')}; the logs differ there.")
    elif m == "clearing log suffix":
        story.say("clear-suffix", f"{n} drops its entries {f.get('from')}..{f.get('to')}: they conflict with the "
                                  "leader's, and the leader's log wins.")
    elif m == "appendEntries rejected, sending older logs":
        story.say("backtrack", f"The leader backs off: {_server_id(f.get('peer', ''))} did not hold what came "
                               f"before; {n} tries again from index {f.get('next')}.")
    elif m == "pipelining replication":
        story.say("pipeline", f"{_server_id(f.get('peer', ''))}'s log matches {n}'s: {n} now streams entries "
                              "without waiting for each answer (pipelining).")
    elif m == "installing snapshot on":
        story.say("send-snapshot", f"{f.get('peer')} needs entries {n} has compacted away: {n} sends its snapshot "
                                   "instead.")
    elif m == "failed to send snapshot to":
        story.say("snapshot-failed", f"{n} could not deliver its snapshot to {_server_id(f.get('peer', ''))}: it "
                                     "tries again later.")
    elif m == "Installed remote snapshot":
        story.say("install-snapshot", f"{n} replaces its state with the leader's snapshot and keeps only the "
                                      "log entries that follow it.")
    elif m == "starting snapshot up to":
        story.say("snapshot-start", f"{n} saves its state machine as a snapshot through index {f.get('index')}, "
                                    "so that the log before it can go.")
    elif m == "snapshot complete up to":
        story.say("snapshot-done", f"{n}'s snapshot through {f.get('index')} is on disk: log entries it covers "
                                   "are dropped (a few are kept for followers just behind).")
    elif m == "updating configuration":
        story.say("configuration", f"{n} appends a configuration entry ({f.get('command')} {f.get('server-id')}). "
                                   "It takes effect as soon as it is in a log, one change at a time.")
    elif m == "read lease acquired":
        story.say("lease-granted", f"Entry {f.get('index')} is committed, so no other leader can have committed "
                                   f"anything since {n} created it: {n} holds a read lease for "
                                   f"{f.get('expires')} more and answers lease reads at once.")
    elif m.startswith("renewing the read lease") or m.startswith("no read lease, confirming reads"):
        story.say("lease-renew", f"{n}'s read lease is running out: it appends a no-op entry, whose commit will "
                                 "grant a new one. Until then a lease read is confirmed by a heartbeat round.")
    elif m == "deferring commits until the previous leader's read lease has expired":
        story.say("lease-deferred", f"{n} took entries from the old leader {f.get('wait')} ago at most: that leader "
                                    "may still serve reads under its lease. {n} takes writes, but commits nothing "
                                    "until the lease is surely over, so no such read can miss a newer write."
                  .replace("{n}", n))
    elif m == "the previous leader's read lease has expired, committing":
        story.say("lease-over", f"The old leader's read lease is over: {n} commits what it holds.")
    elif m == "read lease ended for the leadership transfer":
        story.say("lease-handover", f"{n} gives up its read lease before it hands leadership over, so the new "
                                    "leader need not wait for it.")
    elif m == "starting leadership transfer":
        story.say("transfer", f"{n} hands leadership to {f.get('peer') or f.get('id')}: it stops taking writes and "
                              "brings the target up to date first.")


def _narrate_receive(story: _Story, n: str, event: ev.Receive, sends, before: dict, after: dict, core) -> None:
    msg, src = event.message, event.from_id
    t = type(msg)
    answer = sends[0].message if sends and sends[0].to == src else None
    if t is RequestVote:
        kind = "pre-vote" if msg.pre_vote else "vote"
        if type(answer) is RequestVoteResponse and answer.granted:
            if msg.pre_vote:
                story.say("grant-pre-vote", f"{n} would vote for {src}: its log is at least as up to date as "
                                            f"{n}'s and {n} hears no leader. Nothing changes on {n}.")
            else:
                story.say("grant-vote", f"{n} votes for {src} in term {msg.term}: {src}'s log is at least as up to "
                                        f"date as its own, and {n} has not voted in this term. The vote is on disk "
                                        "before the answer leaves.")
        elif type(answer) is RequestVoteResponse and msg.term < answer.term:
            story.say("refuse-stale", f"{n} refuses the {kind}: it asks for term {msg.term}, older than {n}'s "
                                      f"term {answer.term}.")
    elif t is RequestVoteResponse:
        if msg.pre_vote:
            story.say("pre-vote-counted", f"{n} counts {src}'s pre-vote: {'yes' if msg.granted else 'no'}.")
        elif after.get("role") == "Candidate" or before.get("role") == "Candidate":
            story.say("vote-counted", f"{n} counts {src}'s vote: {'granted' if msg.granted else 'refused'}.")
        else:
            story.say("late-vote", f"{src}'s answer comes after the election is over for {n}: it changes nothing.")
    elif t is AppendEntries:
        if type(answer) is AppendEntriesResponse and msg.term < answer.term:
            story.say("stale-append", f"{n} refuses: {src} leads term {msg.term}, older than {n}'s term "
                                      f"{answer.term}. The answer tells {src} it is deposed.")
        elif msg.heartbeat:
            story.say("heartbeat", f"{n} hears the leader's heartbeat: it stays a follower and restarts its "
                                   "election timer.")
            if after.get("commit", 0) > before.get("commit", 0):
                story.say("heartbeat-commit", f"The heartbeat says entries up to {msg.leader_commit} are "
                                              f"committed: {n} applies up to {after['commit']}.")
        elif type(answer) is AppendEntriesResponse and answer.success:
            if msg.entries:
                story.say("append-ok", f"{n} holds the entry before them ({msg.prev_log_index} of term "
                                       f"{msg.prev_log_term}), so it appends {_span(msg.entries)}, writes them to "
                                       "disk, then answers yes.")
            else:
                story.say("append-ok", f"{n} holds entry {msg.prev_log_index} of term {msg.prev_log_term}: "
                                       "its log matches the leader's up to there.")
            if after.get("commit", 0) > before.get("commit", 0):
                story.say("follower-commit", f"The leader says entries up to {msg.leader_commit} are committed: "
                                             f"{n} applies up to {after['commit']}.")
    elif t is InstallSnapshotResponse and after.get("role") == "Leader":
        if msg.success:
            story.say("snapshot-acked", f"{src} installed the snapshot through {msg.last_index}: {n} goes on "
                                        "sending the entries after it.")
    elif t is AppendEntriesResponse and after.get("role") != "Leader":
        story.say("stale-answer", f"{n} is no longer the leader: {src}'s answer to an earlier request changes "
                                  "nothing.")
    elif t is AppendEntriesResponse and after.get("role") == "Leader" and msg.heartbeat:
        extra = f", and confirms read round {msg.read_seq}" if msg.read_seq else ""
        story.say("heartbeat-ack", f"{src} answers the heartbeat: {n} knows it still follows{extra}. A leader that "
                                   "stops hearing from a majority steps down.")
    elif t is AppendEntriesResponse and after.get("role") == "Leader" and msg.success:
        story.say("acked", f"{src} now holds entries up to {msg.match_index}.")


def _figure_8(story: _Story, n: str, core) -> None:
    """A majority holds an entry the leader still may not commit: it is of an
    older term (Figure 8)."""
    leader = core.leader
    if leader is None:
        return
    index = leader.quorum_match_index(core.configuration.voters, core.id, core.log.last_index,
                                      core._uncounted_voters(leader))
    if index > core.commit_index and not core._can_commit_by_counting(index):
        story.say("figure-8", f"A majority holds entries up to {index}, but {n} does not commit them: entry "
                              f"{index} is from term {core.log.term_at(index)}, not {n}'s term "
                              f"{core.current_term}. A later leader could still replace it (Figure 8); it "
                              "commits once an entry of its own term reaches a majority.")


def narrate_fsync(node_id: str, leader: bool, through: int) -> list[dict]:
    """The sentence for the moment a step's log writes reach the disk."""
    story = _Story()
    if leader:
        story.say("fsync-leader", f"{node_id}'s log is on disk through entry {through} (fsync). Its "
                                  "AppendEntries left before the write finished, so the followers stored the "
                                  "entries meanwhile; its own copy counts towards a majority only from now on.")
    else:
        story.say("append-ok", f"{node_id}'s log is on disk through entry {through} (fsync). Only now does it "
                               "answer the leader: an entry it acknowledged must survive a crash.")
    return story.sentences


def explain_lines(sentences: list[dict]) -> list[str]:
    """Sentences as ``raftkv sim --explain`` prints them."""
    return [f"  » {s['text']} [{s['paper']}; {s['source']}]" for s in sentences]


class Explainer:
    """Narrates every step of a simulated cluster (``raftkv sim --scenario
    NAME --explain``): hooks ``cluster.step_observers`` and prints each step's
    sentences through ``out`` after its trace lines."""

    def __init__(self, cluster, out) -> None:
        self.out = out
        self.views: dict[str, dict] = {}
        cluster.step_observers.append(self.observe)

    def observe(self, node, event, effects) -> None:
        after = node_view(node.raft.status(), {})
        before = self.views.get(node.id) if event is not None else None
        self.views[node.id] = after
        for line in explain_lines(narrate(node.id, event, effects, before, after, core=node.raft)):
            self.out(line)
