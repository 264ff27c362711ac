"""The rules a node decides by, behind a small interface (``raftkv lab``).

Theory of operation: where the core decides one of Raft's rules it builds a
frozen request, calls the matching function of its :class:`Rules` and carries
out the frozen decision it gets back: the core keeps the bookkeeping (logs,
effects, persistence, timers' arithmetic), the rule keeps the judgement. The
functions here are the core's own rules; ``raftkv lab`` hands a node a
``Rules`` whose functions a learner wrote, and the simulator then grades
them. A rule sees only its request, never the node: whatever it returns is
all it can change.

Each docstring states the rule and the paper's section (Ongaro & Ousterhout,
"In Search of an Understandable Consensus Algorithm", extended version).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .durability import PersistDecision, PersistRequest, persist_before_send
from .messages import Entry
from .quorum import quorum_value

# Why a vote or an append was refused; the core logs hashicorp's line for each.
STALE_TERM = "stale term"
ALREADY_VOTED = "already voted"
LOG_TERM_OLDER = "candidate's last log term is older"
LOG_SHORTER = "candidate's log is shorter"
NO_PREV_ENTRY = "no entry at prev_log_index"
PREV_TERM_MISMATCH = "prev_log_term does not match"
LEADER_HEARD = "a leader is heard"


class LogView:
    """A read-only look at a node's log, for rules to reason about."""

    __slots__ = ("_log",)

    def __init__(self, log) -> None:
        self._log = log

    @property
    def last_index(self) -> int:
        """Index of the last entry (0 for an empty log)."""
        return self._log.last_index

    @property
    def last_term(self) -> int:
        """Term of the last entry (0 for an empty log)."""
        return self._log.last_term

    @property
    def first_index(self) -> int:
        """The oldest index still held; those before it went into a snapshot."""
        return self._log.first_index

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; also answers for ``first_index - 1``
        (0 at index 0); None beyond the log or before the snapshot."""
        return self._log.term_at(index)

    def __repr__(self) -> str:
        terms = [self._log.term_at(i) for i in range(self.first_index, self.last_index + 1)]
        if len(terms) > 12:
            return f"log[{self.first_index}..{self.last_index}: ... {' '.join(map(str, terms[-12:]))}]"
        return f"log[{self.first_index}..{self.last_index}: {' '.join(map(str, terms))}]"


# ---------------------------------------------------------------- granting a vote

@dataclass(frozen=True)
class VoteRequest:
    """A RequestVote as the voter sees it. A newer term has already been
    entered (``current_term`` is then the candidate's, ``voted_for`` None).
    Pre-votes go to :func:`grant_pre_vote`."""
    current_term: int
    voted_for: str | None          # whom this node voted for in current_term
    last_log_index: int            # this node's log
    last_log_term: int
    candidate: str
    term: int                      # the candidate's term
    candidate_last_log_index: int
    candidate_last_log_term: int


@dataclass(frozen=True)
class VoteDecision:
    granted: bool
    restart_timer: bool = False    # restart this node's election timer
    reason: str = ""               # why not: STALE_TERM, ALREADY_VOTED, LOG_TERM_OLDER, LOG_SHORTER


def grant_vote(req: VoteRequest) -> VoteDecision:
    """RequestVote receiver (Figure 2, §5.2, §5.4.1).

    1. Refuse a candidate whose term is older than ours (§5.1).
    2. Vote at most once per term: refuse if ``voted_for`` is someone else
       (§5.2); a repeated request from the one we voted for gets its vote again.
    3. Refuse a candidate whose log is less up to date than ours: compare the
       last entries' terms; the later term wins; with equal terms the longer
       log wins (§5.4.1).
    Granting a vote (the core records it durably before answering)
    restarts the election timer; nothing else here does (§5.2).
    """
    if req.term < req.current_term:
        return VoteDecision(False, reason=STALE_TERM)
    if req.voted_for is not None:
        return VoteDecision(req.voted_for == req.candidate, reason=ALREADY_VOTED)
    if req.candidate_last_log_term != req.last_log_term:
        if req.candidate_last_log_term < req.last_log_term:
            return VoteDecision(False, reason=LOG_TERM_OLDER)
    elif req.candidate_last_log_index < req.last_log_index:
        return VoteDecision(False, reason=LOG_SHORTER)
    return VoteDecision(True, restart_timer=True)


# ---------------------------------------------------------------- granting a pre-vote

@dataclass(frozen=True)
class PreVoteRequest:
    """A pre-vote as the voter sees it: would it vote for ``candidate`` in
    ``term`` (its candidate's next term), were it asked?"""
    current_term: int
    last_log_index: int            # this node's log
    last_log_term: int
    candidate: str
    term: int                      # the term the candidate would campaign in
    candidate_last_log_index: int
    candidate_last_log_term: int
    leader_heard: bool             # a leader (not the candidate) was heard within the election timeout


@dataclass(frozen=True)
class PreVoteDecision:
    granted: bool
    enter_term: bool = False       # move this node to the candidate's term, as a real RequestVote does
    restart_timer: bool = False    # restart this node's election timer
    reason: str = ""               # why not: LEADER_HEARD, STALE_TERM, LOG_TERM_OLDER, LOG_SHORTER


def grant_pre_vote(req: PreVoteRequest) -> PreVoteDecision:
    """The pre-vote (thesis §9.6; §4.2.3 on disruptive servers).

    A candidate first asks whether it *could* win, without anyone changing
    term: a server cut off from the others keeps failing to win pre-votes
    instead of raising its term, and cannot depose a working leader when it
    comes back. Grant a pre-vote only if (1) no leader was heard within the
    election timeout (a server that hears its leader would not vote either),
    (2) the candidate's term is not older than ours, and (3) its log is at
    least as up to date as ours (§5.4.1). A pre-vote is a question, not a
    vote: it enters no term, records no vote and restarts no timer.
    """
    if req.leader_heard:
        return PreVoteDecision(False, reason=LEADER_HEARD)
    if req.term < req.current_term:
        return PreVoteDecision(False, reason=STALE_TERM)
    if req.candidate_last_log_term != req.last_log_term:
        if req.candidate_last_log_term < req.last_log_term:
            return PreVoteDecision(False, reason=LOG_TERM_OLDER)
    elif req.candidate_last_log_index < req.last_log_index:
        return PreVoteDecision(False, reason=LOG_SHORTER)
    return PreVoteDecision(True)


# ---------------------------------------------------------------- the follower's AppendEntries

@dataclass(frozen=True)
class AppendRequest:
    """An AppendEntries (not a heartbeat) as the follower sees it. Entries
    before the follower's snapshot are already cut off the front:
    ``prev_log_index`` is never below ``log.first_index - 1``."""
    current_term: int
    commit_index: int
    log: LogView
    term: int                      # the leader's term
    leader: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]     # entries[i].index == prev_log_index + 1 + i
    leader_commit: int


@dataclass(frozen=True)
class AppendDecision:
    accept_leader: bool            # the sender leads our term: follow it, restart the election timer
    success: bool
    truncate_from: int | None = None   # drop our entries from this index on, before appending
    append: tuple[Entry, ...] = ()     # entries to add after our (possibly truncated) last entry
    commit_index: int = 0              # our commit index afterwards (it never goes back)
    match_index: int = 0               # on success: the last index known to match the leader's log
    reason: str = ""                   # why not: STALE_TERM, NO_PREV_ENTRY, PREV_TERM_MISMATCH


def append_entries(req: AppendRequest) -> AppendDecision:
    """AppendEntries receiver (Figure 2, §5.3).

    1. Refuse a leader whose term is older than ours, without following it
       (§5.1).
    2. Refuse if our log has no entry at ``prev_log_index`` whose term is
       ``prev_log_term`` (the consistency check, §5.3).
    3. If an existing entry conflicts with a new one (same index, other
       term), delete it and all that follow it (§5.3). Entries that match
       stay: a delayed, older AppendEntries must not cut off what a newer
       one appended.
    4. Append the entries not already in the log.
    5. If ``leader_commit`` > our commit index, commit up to
       min(leader_commit, index of the last new entry): only what this
       request proved to match the leader's log (§5.3).
    """
    if req.term < req.current_term:
        return _refuse_append(STALE_TERM, accept_leader=False)
    log = req.log
    if req.prev_log_index > log.last_index:
        return _refuse_append(NO_PREV_ENTRY)
    if log.term_at(req.prev_log_index) != req.prev_log_term:
        return _refuse_append(PREV_TERM_MISMATCH)
    truncate_from = None
    new: tuple[Entry, ...] = ()
    for i, entry in enumerate(req.entries):
        if entry.index > log.last_index:
            new = req.entries[i:]
            break
        if log.term_at(entry.index) != entry.term:
            truncate_from = entry.index
            new = req.entries[i:]
            break
    match = req.prev_log_index + len(req.entries)
    commit = max(req.commit_index, min(req.leader_commit, match))
    return AppendDecision(True, True, truncate_from, new, commit, match)


def _refuse_append(reason: str, accept_leader: bool = True) -> AppendDecision:
    return AppendDecision(accept_leader, False, reason=reason)


# ---------------------------------------------------------------- the follower's InstallSnapshot

@dataclass(frozen=True)
class SnapshotRequest:
    """An InstallSnapshot as the follower sees it: the leader's snapshot
    covers every entry through ``snapshot_index`` (whose term is
    ``snapshot_term``), all of them committed."""
    current_term: int
    commit_index: int
    log: LogView
    term: int                      # the leader's term
    leader: str
    snapshot_index: int
    snapshot_term: int


@dataclass(frozen=True)
class SnapshotDecision:
    accept_leader: bool            # the sender leads our term: follow it, restart the election timer
    install: bool = False          # replace the state machine with the snapshot
    keep_log_suffix: bool = False  # on install: keep the entries after snapshot_index, drop only those before
    reason: str = ""               # why not: STALE_TERM


def install_snapshot(req: SnapshotRequest) -> SnapshotDecision:
    """InstallSnapshot receiver (Figure 13; §7).

    1. Refuse a leader whose term is older than ours, without following it.
    2. A snapshot that ends at or before our commit index is stale (a
       delayed or duplicated request): we already hold everything in it,
       and installing it would take our state machine back. Answer it
       without installing.
    3. Otherwise install it: the state machine is reset to the snapshot.
       If our log has the snapshot's last entry (same index and term), the
       entries after it match the leader's (Log Matching) and may already
       have been acknowledged: keep them (Figure 13 step 6). Otherwise the
       whole log is discarded (step 7).
    """
    if req.term < req.current_term:
        return SnapshotDecision(False, reason=STALE_TERM)
    if req.snapshot_index <= req.commit_index:
        return SnapshotDecision(True)
    keep = req.snapshot_index <= req.log.last_index and req.log.term_at(req.snapshot_index) == req.snapshot_term
    return SnapshotDecision(True, install=True, keep_log_suffix=keep)


# ---------------------------------------------------------------- the commit rule

@dataclass(frozen=True)
class CommitRequest:
    """What a leader knows when its followers' progress moves."""
    current_term: int
    commit_index: int
    match_indexes: tuple[int, ...]  # one per voter: what it holds; the leader's own last index included
    log: LogView


def leader_commit_index(req: CommitRequest) -> int:
    """The leader's commit rule (Figure 2, "Rules for Servers: Leaders";
    §5.3, §5.4.2, Figure 8).

    The new commit index is the highest N such that a majority of voters
    hold entries up to N (``match_indexes``) *and* the entry at N is from
    the current term. An entry of an older term is never committed by
    counting its replicas, however many: Figure 8 shows a later leader
    replacing one. It commits indirectly, with the current term's entry
    after it. The commit index never goes back.
    """
    index = quorum_value(req.match_indexes)
    if index > req.commit_index and req.log.term_at(index) == req.current_term:
        return index
    return req.commit_index


# ---------------------------------------------------------------- the leader's view of a follower

@dataclass(frozen=True)
class ProgressRequest:
    """A follower's answer to an AppendEntries, as its leader sees it, with
    what the leader knew of that follower before."""
    success: bool
    match_index: int               # the highest index known to match the follower's log
    next_index: int                # the next entry the leader would send it
    prev_log_index: int            # the answered request's previous index: the one refused, on a rejection
    acknowledged: int              # on success: the last index the follower says now matches
    follower_last_index: int       # the follower's last log index (on a rejection, a hint)


@dataclass(frozen=True)
class ProgressDecision:
    match_index: int
    next_index: int                # the next AppendEntries starts here (prev_log_index = next_index - 1)


def follower_progress(req: ProgressRequest) -> ProgressDecision:
    """The leader's nextIndex and matchIndex for one follower (Figure 2,
    "Rules for Servers", Leaders; §5.3 and its closing optimization).

    On success the follower's log matches the leader's through
    ``acknowledged``: match_index rises to it (answers may arrive out of
    order: it never goes back), next_index to just after it unless more is
    already on its way. On a rejection nothing was learned about what
    matches: match_index stays, next_index goes back, to the refused
    previous index at most and to just after the follower's last entry if
    its log is shorter (the hint that skips a round trip per missing entry),
    never to or below match_index.
    """
    if req.success:
        if req.acknowledged > req.match_index:
            return ProgressDecision(req.acknowledged, max(req.next_index, req.acknowledged + 1))
        return ProgressDecision(req.match_index, req.next_index)
    back = min(req.prev_log_index, req.follower_last_index + 1)
    return ProgressDecision(req.match_index, max(back, req.match_index + 1, 1))


# ---------------------------------------------------------------- the ReadIndex read

@dataclass(frozen=True)
class ReadRequest:
    """A linearizable read at the leader, as it arrives (``quorum_confirmed``
    false) or once a heartbeat round sent after it arrived was echoed by a
    majority of voters (true; a lone voter is its own majority)."""
    current_term: int
    commit_index: int              # the leader's commit index now
    first_index_of_term: int       # the index of this leader's first entry of its term (its no-op)
    arrival_commit_index: int      # the commit index when the read arrived (-1: not recorded)
    quorum_confirmed: bool


@dataclass(frozen=True)
class ReadDecision:
    ready: bool                    # answer the read now
    index: int = 0                 # its read index: served once the state machine has applied it


def read_index(req: ReadRequest) -> ReadDecision:
    """The ReadIndex read (thesis §6.4; §8 of the paper).

    1. A new leader does not know what its predecessors committed until it
       has committed an entry of its own term (Leader Completeness gives it
       every committed entry, but not the knowledge of which are). Before
       that, its commit index may lie behind writes already acknowledged;
       after it, the read index is the commit index at arrival.
    2. The leader must know it still leads once the read arrived: a
       deposed leader that does not know it yet would read stale data. A
       heartbeat round sent after the read, echoed by a majority, proves it.
    Answer only with both; the read index is the commit index at arrival if
    this term had committed an entry by then, else the commit index now.
    """
    if not req.quorum_confirmed or req.commit_index < req.first_index_of_term:
        return ReadDecision(False)
    if req.arrival_commit_index >= req.first_index_of_term:
        return ReadDecision(True, req.arrival_commit_index)
    return ReadDecision(True, req.commit_index)


# ---------------------------------------------------------------- the set of rules

@dataclass(frozen=True)
class Rules:
    """The functions a node decides by; ``raftkv lab`` swaps some out."""
    grant_vote: Callable[[VoteRequest], VoteDecision] = grant_vote
    append_entries: Callable[[AppendRequest], AppendDecision] = append_entries
    leader_commit_index: Callable[[CommitRequest], int] = leader_commit_index
    persist_before_send: Callable[[PersistRequest], PersistDecision] = persist_before_send
    follower_progress: Callable[[ProgressRequest], ProgressDecision] = follower_progress
    grant_pre_vote: Callable[[PreVoteRequest], PreVoteDecision] = grant_pre_vote
    install_snapshot: Callable[[SnapshotRequest], SnapshotDecision] = install_snapshot
    read_index: Callable[[ReadRequest], ReadDecision] = read_index


DEFAULT_RULES = Rules()

RULE_NAMES: Sequence[str] = ("grant_vote", "append_entries", "leader_commit_index", "persist_before_send",
                              "follower_progress", "grant_pre_vote",
                              "install_snapshot", "read_index")
