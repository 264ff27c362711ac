"""Reference solution of exercise "persist" (Raft Figure 2, Persistent state; §5.1-§5.3; thesis §3.8)."""

from raftkv.raft.durability import PersistDecision, PersistRequest


def persist_before_send(req: PersistRequest) -> PersistDecision:
    """Every change to the term, the vote and the log is written before anything leaves."""
    hard_state = req.term_changed or req.vote_changed
    return PersistDecision(hard_state=hard_state, log=req.log_changed)
