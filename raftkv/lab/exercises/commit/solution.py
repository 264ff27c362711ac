"""Reference solution of exercise "commit" (Raft Figure 2, Leaders; §5.3, §5.4.2, Figure 8)."""

from raftkv.raft.rules import CommitRequest


def leader_commit_index(req: CommitRequest) -> int:
    """The highest index a majority holds, if its entry is of the current term."""
    ordered = sorted(req.match_indexes, reverse=True)
    majority = len(ordered) // 2 + 1
    n = ordered[majority - 1] if ordered else 0
    if n > req.commit_index and req.log.term_at(n) == req.current_term:
        return n
    return req.commit_index
