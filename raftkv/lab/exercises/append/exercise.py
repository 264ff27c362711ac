"""Exercise "append": the follower's AppendEntries (Raft Figure 2, AppendEntries RPC; §5.1, §5.3).

Write ``append_entries``. Every follower calls it when an AppendEntries with
a log position arrives (heartbeats are the core's own); the core carries out
your decision: follows the leader and restarts its election timer, truncates,
appends, commits and answers. Grade it with ``raftkv lab check DIR``.
"""

from raftkv.raft.rules import NO_PREV_ENTRY, PREV_TERM_MISMATCH, STALE_TERM, AppendDecision, AppendRequest

__all__ = ["append_entries", "NO_PREV_ENTRY", "PREV_TERM_MISMATCH", "STALE_TERM"]


def append_entries(req: AppendRequest) -> AppendDecision:
    """Decide what the follower does with ``req``.

    The rule (Figure 2, "AppendEntries RPC, receiver implementation"):

    1. If ``req.term`` is older than ``req.current_term``, refuse, and do not
       treat the sender as leader: ``AppendDecision(accept_leader=False,
       success=False, reason=STALE_TERM)`` (§5.1).
    2. Otherwise the sender is the leader (``accept_leader=True``). Refuse
       (``success=False``) unless ``req.log`` holds an entry at
       ``req.prev_log_index`` whose term is ``req.prev_log_term`` (§5.3).
       ``req.log.term_at(i)`` answers None beyond the last entry, and 0 at
       index 0.
    3. If an entry of ``req.entries`` conflicts with one in the log (same
       index, another term), delete that entry and all that follow it:
       ``truncate_from=index``. Entries that match stay: a delayed older
       AppendEntries must not cut off what a newer one appended.
    4. ``append``: the entries of ``req.entries`` not already in the log,
       continuing it (after the truncation, if any).
    5. ``commit_index``: if ``req.leader_commit`` > ``req.commit_index``, the
       new commit index is min(leader_commit, index of the last new entry,
       that is ``prev_log_index + len(entries)``); it never goes back.
       ``match_index``: that same last index, which the leader counts.
    """
    raise NotImplementedError("append_entries is not written yet")
