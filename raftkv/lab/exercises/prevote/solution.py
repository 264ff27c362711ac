"""Reference solution of exercise "prevote" (Raft thesis §9.6; §4.2.3; paper §5.4.1)."""

from raftkv.raft.rules import LEADER_HEARD, LOG_SHORTER, LOG_TERM_OLDER, STALE_TERM, PreVoteDecision, PreVoteRequest


def grant_pre_vote(req: PreVoteRequest) -> PreVoteDecision:
    """Not while a leader is heard; not for an older term; only for an up-to-date log; change nothing."""
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
