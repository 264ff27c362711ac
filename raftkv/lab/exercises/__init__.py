"""The exercises, in the order a learner does them.

Theory of operation: an exercise names one function of
:class:`raftkv.raft.rules.Rules`, the paper's rule it implements, the
scenarios that exercise that rule (the simulator's own, in
raftkv/sim/testdata/, or the lab's, in raftkv/lab/scenarios/) and how many
seeded randomized runs grade it, and for an exercise that decides reads,
how many more runs' client histories are checked for linearizability. Its files live beside this module, in a
folder of its name: ``exercise.py`` (the template a learner fills in),
``solution.py`` (the reference) and ``hints.md`` (hints, one per paragraph).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

HERE = pathlib.Path(__file__).parent


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    function: str                   # the Rules field it replaces
    paper: str                      # the rule, as the paper states it
    scenarios: tuple[str, ...]      # "lab:NAME" for raftkv/lab/scenarios/NAME.txt
    seeds: int = 20
    history_seeds: int = 0          # runs whose client history is checked for linearizability as a whole

    @property
    def folder(self) -> pathlib.Path:
        return HERE / self.name

    def template(self) -> str:
        return (self.folder / "exercise.py").read_text(encoding="utf-8")

    def solution(self) -> str:
        return (self.folder / "solution.py").read_text(encoding="utf-8")

    def hints(self) -> list[str]:
        text = (self.folder / "hints.md").read_text(encoding="utf-8")
        return [p.strip() for p in text.split("\n\n") if p.strip() and not p.startswith("#")]


EXERCISES: tuple[Exercise, ...] = (
    Exercise("vote", "Granting a vote: the term, one vote per term, the up-to-date check",
             "grant_vote",
             "RequestVote receiver (Figure 2; §5.1, §5.2, §5.4.1): refuse an older term; vote at most "
             "once per term; vote only for a candidate whose log is at least as up to date as yours; "
             "restart the election timer only when you give your vote.",
             ("first-election", "lab:stale-candidate", "lab:two-candidates", "leader-crash")),
    Exercise("append", "The follower's AppendEntries: the previous-log check, truncation, appending, "
             "the commit index", "append_entries",
             "AppendEntries receiver (Figure 2; §5.1, §5.3): refuse an older term; refuse unless your log "
             "holds prev_log_index with prev_log_term; delete a conflicting entry and all after it, and "
             "only a conflicting one; append what is new; commit up to min(leader_commit, index of the "
             "last new entry).",
             ("first-election", "follower-catch-up", "lab:stale-append", "stale-leader-partition",
              "figure-8", "snapshot-install")),
    Exercise("commit", "The leader's commit rule: a majority and an entry of the current term (Figure 8)",
             "leader_commit_index",
             "Leaders (Figure 2; §5.3, §5.4.2): the commit index is the highest N held by a majority whose "
             "entry is of the current term; an older term's entry is never committed by counting its "
             "replicas (Figure 8).",
             ("first-election", "follower-catch-up", "figure-8")),
    Exercise("persist", "What must be on disk before a reply: the term, the vote, the entries",
             "persist_before_send",
             "Persistent state on all servers (Figure 2; §5.1, §5.2, §5.3): currentTerm, votedFor and log[] "
             "are updated on stable storage before responding to RPCs; a crash forgets the rest, and a "
             "reply must never speak for a term, a vote or entries the sender could forget.",
             ("first-election", "lab:two-candidates", "follower-catch-up", "leader-crash")),
    Exercise("backtrack", "The leader's backtracking after a rejection, and a follower's progress",
             "follower_progress",
             "Leaders (Figure 2; §5.3): if an AppendEntries succeeds, update nextIndex and matchIndex for the "
             "follower (matchIndex only to what it acknowledged, never back); if it fails because of log "
             "inconsistency, decrement nextIndex and retry (to just after the follower's last entry if its "
             "log is shorter).",
             ("follower-catch-up", "lab:conflicting-follower", "figure-8", "stale-leader-partition",
              "snapshot-conflicting-suffix",
              "leader-crash")),
    Exercise("prevote", "Granting a pre-vote: no term change, not while a leader is heard, the up-to-date check",
             "grant_pre_vote",
             "Pre-vote (thesis §9.6; §4.2.3, §5.4.1): grant a pre-vote only if no leader was heard within the "
             "election timeout, the candidate's term is not older and its log is at least as up to date; a "
             "pre-vote changes no term, records no vote and restarts no timer.",
             ("first-election", "lab:disruptive-rejoin", "split-vote", "leader-crash")),
    Exercise("snapshot", "InstallSnapshot on the follower: when to install, what of the log to keep",
             "install_snapshot",
             "InstallSnapshot receiver (Figure 13; §7): refuse an older term; a snapshot not beyond the "
             "commit index is stale and not installed; otherwise reset the state machine to it, retain the "
             "log entries after it if the log has its last entry (same index and term), else discard the "
             "entire log.",
             ("snapshot-install", "snapshot-conflicting-suffix", "lab:snapshot-late-duplicate")),
    Exercise("readindex", "The ReadIndex read: this term's first commit, then a majority's heartbeat echo",
             "read_index",
             "ReadIndex (thesis §6.4; §8): a leader answers a linearizable read only once it has committed an "
             "entry of its term and a majority answered a heartbeat sent after the read arrived; the read "
             "index is the commit index at arrival (or at that first commit, if later).",
             ("lab:read-after-election", "lab:deposed-leader-read", "weak-read-partition",
              "lease-clock-drift"), history_seeds=5),
)

BY_NAME = {e.name: e for e in EXERCISES}
