"""Reference solution of exercise "append" (Raft Figure 2, AppendEntries RPC; §5.1, §5.3)."""

from raftkv.raft.rules import NO_PREV_ENTRY, PREV_TERM_MISMATCH, STALE_TERM, AppendDecision, AppendRequest


def append_entries(req: AppendRequest) -> AppendDecision:
    """Refuse an older leader; check the previous entry; truncate only at a conflict."""
    if req.term < req.current_term:
        return AppendDecision(accept_leader=False, success=False, reason=STALE_TERM)
    log = req.log
    if req.prev_log_index > log.last_index:
        return AppendDecision(True, False, reason=NO_PREV_ENTRY)
    if log.term_at(req.prev_log_index) != req.prev_log_term:
        return AppendDecision(True, False, reason=PREV_TERM_MISMATCH)
    truncate_from = None
    new = ()
    for i, entry in enumerate(req.entries):
        if entry.index > log.last_index:
            new = req.entries[i:]
            break
        if log.term_at(entry.index) != entry.term:
            truncate_from = entry.index
            new = req.entries[i:]
            break
    last_new = req.prev_log_index + len(req.entries)
    commit = max(req.commit_index, min(req.leader_commit, last_new))
    return AppendDecision(True, True, truncate_from, new, commit, last_new)
