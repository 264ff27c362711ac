"""Exercise "vote": granting a vote (Raft Figure 2, RequestVote RPC; §5.1, §5.2, §5.4.1).

Write ``grant_vote``. Every node of the simulator, and of ``raftkv serve
--lab DIR``, calls it when a RequestVote arrives; the core does the rest
(it enters a newer term before asking you, records the vote durably before
answering, logs and sends the reply). Grade it with ``raftkv lab check DIR``.
"""

from raftkv.raft.rules import ALREADY_VOTED, LOG_SHORTER, LOG_TERM_OLDER, STALE_TERM, VoteDecision, VoteRequest

__all__ = ["grant_vote", "ALREADY_VOTED", "LOG_SHORTER", "LOG_TERM_OLDER", "STALE_TERM"]


def grant_vote(req: VoteRequest) -> VoteDecision:
    """Decide whether to give ``req.candidate`` your vote.

    The rule (Figure 2, "RequestVote RPC, receiver implementation"):

    1. Reply false if the candidate's term (``req.term``) is older than
       ``req.current_term`` (§5.1).
    2. Vote at most once per term (§5.2): if ``req.voted_for`` is set,
       grant only if it is ``req.candidate`` itself (a repeated request).
    3. Grant only if the candidate's log is at least as up to date as yours
       (§5.4.1): compare the terms of the last entries
       (``req.candidate_last_log_term`` against ``req.last_log_term``); a
       later term is more up to date; with equal terms the longer log
       (``..._last_log_index``) is.

    Return ``VoteDecision(granted, restart_timer=..., reason=...)``.
    ``restart_timer`` restarts this node's election timer: do it when you
    give a real vote, and never otherwise (§5.2: a server restarts its timer
    when it hears from the current leader or grants a vote). ``reason`` (one
    of the constants imported above) makes the node log why it refused.
    Pre-votes (thesis §9.6) are another exercise, ``prevote``.
    """
    raise NotImplementedError("grant_vote is not written yet")
