"""Reference solution of exercise "vote" (Raft Figure 2, RequestVote RPC; §5.1, §5.2, §5.4.1)."""

from raftkv.raft.rules import ALREADY_VOTED, LOG_SHORTER, LOG_TERM_OLDER, STALE_TERM, VoteDecision, VoteRequest


def grant_vote(req: VoteRequest) -> VoteDecision:
    """Refuse an older term, vote once per term, and only for an up-to-date log."""
    if req.term < req.current_term:
        return VoteDecision(False, reason=STALE_TERM)
    if req.voted_for is not None:
        # a repeated request from the one we voted for gets its vote again
        return VoteDecision(req.voted_for == req.candidate, reason=ALREADY_VOTED)
    if req.candidate_last_log_term != req.last_log_term:
        if req.candidate_last_log_term < req.last_log_term:
            return VoteDecision(False, reason=LOG_TERM_OLDER)
    elif req.candidate_last_log_index < req.last_log_index:
        return VoteDecision(False, reason=LOG_SHORTER)
    return VoteDecision(True, restart_timer=True)
