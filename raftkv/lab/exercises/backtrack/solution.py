"""Reference solution of exercise "backtrack" (Raft Figure 2, Leaders; §5.3)."""

from raftkv.raft.rules import ProgressDecision, ProgressRequest


def follower_progress(req: ProgressRequest) -> ProgressDecision:
    """Move up to an acknowledgement; after a rejection back off, with the follower's hint."""
    if req.success:
        if req.acknowledged > req.match_index:
            return ProgressDecision(req.acknowledged, max(req.next_index, req.acknowledged + 1))
        return ProgressDecision(req.match_index, req.next_index)   # a late answer
    back = min(req.prev_log_index, req.follower_last_index + 1)
    return ProgressDecision(req.match_index, max(back, req.match_index + 1, 1))
