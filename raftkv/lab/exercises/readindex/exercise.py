"""Exercise "readindex": the ReadIndex read (Raft thesis §6.4; paper §8).

Write ``read_index``. A leader calls it when a linearizable read arrives
(``req.quorum_confirmed`` false) and again once a heartbeat round sent after
the read was echoed by a majority of voters (true). When you answer
``ready``, the core serves the read from the state machine once it has
applied your read index. Reads on followers go through their leader's
ReadIndex too. Grade it with ``raftkv lab check DIR``.
"""

from raftkv.raft.rules import ReadDecision, ReadRequest

__all__ = ["read_index"]


def read_index(req: ReadRequest) -> ReadDecision:
    """Decide whether the read may be answered now, and at which index.

    The rule (thesis §6.4, "Processing read-only queries more efficiently"):

    1. If the leader has not yet committed an entry of its current term
       (``req.commit_index < req.first_index_of_term``; that entry is the
       no-op a leader appends when elected), wait: its commit index may be
       behind what earlier leaders committed and acknowledged.
    2. The read index is the commit index when the read arrived
       (``req.arrival_commit_index``), if this term had committed an entry
       by then; otherwise the commit index once it has
       (``req.commit_index``).
    3. Answer only after the leader has made sure it was still the leader
       when the read arrived: a heartbeat round sent after it, answered by
       a majority (``req.quorum_confirmed``). A leader that was deposed
       without knowing it would serve stale data.

    Return ``ReadDecision(False)`` to wait, ``ReadDecision(True, index)`` to
    answer.
    """
    raise NotImplementedError("read_index is not written yet")
