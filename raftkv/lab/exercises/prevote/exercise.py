"""Exercise "prevote": granting a pre-vote (Raft thesis §9.6; §4.2.3; paper §5.4.1).

Write ``grant_pre_vote``. Before a follower whose election timer fired
becomes a candidate (and raises its term), it asks the others whether they
*would* vote for it in its next term. Every node calls your function when
such a pre-vote request arrives; the core sends the answer. Grade it with
``raftkv lab check DIR``.
"""

from raftkv.raft.rules import LEADER_HEARD, LOG_SHORTER, LOG_TERM_OLDER, STALE_TERM, PreVoteDecision, PreVoteRequest

__all__ = ["grant_pre_vote", "LEADER_HEARD", "LOG_SHORTER", "LOG_TERM_OLDER", "STALE_TERM"]


def grant_pre_vote(req: PreVoteRequest) -> PreVoteDecision:
    """Decide whether ``req.candidate`` would get your vote in ``req.term``.

    The rule (thesis §9.6, "Preventing disruptions when a server rejoins the
    cluster"): a candidate runs a pre-vote round first and becomes a real
    candidate only if a majority grants it. Grant a pre-vote only if:

    1. you hear no leader (``req.leader_heard`` is false): a server that
       heard its leader within the election timeout would refuse a real
       vote too (leader stickiness, §4.2.3);
    2. the candidate's term is not older than yours (``req.current_term``);
    3. the candidate's log is at least as up to date as yours (§5.4.1: the
       last entries' terms first, then the lengths).

    A pre-vote is a question, not a vote: it never changes your term
    (``enter_term`` stays False), records no vote and restarts no timer
    (``restart_timer`` stays False). Return
    ``PreVoteDecision(granted, reason=...)``; ``reason`` (one of the
    constants imported above) makes the node log why it refused.
    """
    raise NotImplementedError("grant_pre_vote is not written yet")
