"""Exercise "commit": the leader's commit rule (Raft Figure 2, Rules for Servers, Leaders; §5.3, §5.4.2, Figure 8).

Write ``leader_commit_index``. A leader calls it whenever a follower's match
index moves or it appends; the core commits (and applies) up to what you
return. Grade it with ``raftkv lab check DIR``.
"""

from raftkv.raft.rules import CommitRequest

__all__ = ["leader_commit_index"]


def leader_commit_index(req: CommitRequest) -> int:
    """Return the leader's new commit index.

    The rule (Figure 2, "Rules for Servers", Leaders, last bullet): if there
    exists an N > ``req.commit_index`` such that a majority of
    ``req.match_indexes`` (one per voter, the leader's own last index
    included) are >= N, and ``req.log.term_at(N) == req.current_term``, the
    commit index is N.

    Only an entry of the current term is committed by counting replicas
    (§5.4.2): Figure 8 shows an older term's entry stored on a majority and
    still overwritten by a later leader. Older entries commit with the
    current term's entry after them. Never return less than
    ``req.commit_index``.
    """
    raise NotImplementedError("leader_commit_index is not written yet")
