"""Exercise "backtrack": the leader's view of a follower after it answers (Raft Figure 2, Leaders; §5.3).

Write ``follower_progress``. A leader calls it whenever a follower answers
an AppendEntries (heartbeats aside): on a success, to move what it knows the
follower matches; on a rejection, to choose where the next AppendEntries
starts. The core does the rest (flow control, sending, committing by the
match indexes you set). Grade it with ``raftkv lab check DIR``.
"""

from raftkv.raft.rules import ProgressDecision, ProgressRequest

__all__ = ["follower_progress"]


def follower_progress(req: ProgressRequest) -> ProgressDecision:
    """Return the follower's new ``match_index`` and ``next_index``.

    The rule (Figure 2, "Rules for Servers", Leaders, and §5.3):

    * If successful (``req.success``): the follower's log matches the
      leader's through ``req.acknowledged``. Update matchIndex to it and
      nextIndex to just after it. Answers can arrive late and out of order:
      matchIndex never goes back, and nextIndex may already be further on
      (the leader sends batches without waiting).
    * If the AppendEntries failed because of log inconsistency: decrement
      nextIndex and retry. The refused request's previous index
      (``req.prev_log_index``) did not match, so nextIndex goes back to it
      at most; if the follower's log ends earlier
      (``req.follower_last_index``) jump to just after its end (§5.3's
      closing paragraph: one round trip instead of one per entry).
      matchIndex stays: a rejection proves nothing matches less.

    Whatever you return, nextIndex stays above matchIndex and at least 1.
    The leader commits by your match indexes (Figure 2): one set higher
    than what the follower holds commits an entry a majority does not have.
    """
    raise NotImplementedError("follower_progress is not written yet")
