"""Exercise "persist": what must be on disk before a reply (Raft Figure 2, Persistent state; §5.1-§5.3; thesis §3.8).

Write ``persist_before_send``. At the end of every step that changed the
node's term, vote or log, the core asks you which of those changes must be
durable before the step's messages leave (its replies among them). What you
leave out is written with the node's next step, after the messages: a crash
in between forgets it. Grade it with ``raftkv lab check DIR``.
"""

from raftkv.raft.durability import PersistDecision, PersistRequest

__all__ = ["persist_before_send"]


def persist_before_send(req: PersistRequest) -> PersistDecision:
    """Decide what must be durable before ``req.sends`` leave.

    The rule (Figure 2, "Persistent state on all servers: updated on stable
    storage before responding to RPCs"):

    * ``currentTerm`` and ``votedFor`` (``req.term_changed``,
      ``req.vote_changed``): every message carries the sender's term; a
      granted vote promises one vote per term (§5.2), and a candidate's
      RequestVote carries its vote for itself.
    * the log (``req.log_changed``, ``req.appended``): a follower's
      successful AppendEntries reply lets the leader count those entries
      towards a commit (§5.3); an entry the follower then forgets on a crash
      may be the one that made it committed (§5.4).

    Return ``PersistDecision(hard_state=..., log=...)``: True writes that part
    before the messages leave; False lets it wait for the node's next step.
    A node restarted after a crash knows only what was written.
    """
    raise NotImplementedError("persist_before_send is not written yet")
