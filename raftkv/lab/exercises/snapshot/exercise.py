"""Exercise "snapshot": InstallSnapshot on the follower (Raft §7, Figure 13).

Write ``install_snapshot``. A leader sends its snapshot to a follower that
needs entries the leader has compacted away; the follower calls your
function when it arrives. The core carries out your decision: it resets the
state machine to the snapshot, keeps or drops the log, and replies. Grade it
with ``raftkv lab check DIR``.
"""

from raftkv.raft.rules import STALE_TERM, SnapshotDecision, SnapshotRequest

__all__ = ["install_snapshot", "STALE_TERM"]


def install_snapshot(req: SnapshotRequest) -> SnapshotDecision:
    """Decide whether to install the leader's snapshot, and what of your log to keep.

    The rule (Figure 13, "InstallSnapshot RPC, receiver implementation"):

    1. Reply immediately if the leader's term (``req.term``) is older than
       ``req.current_term``: ``SnapshotDecision(accept_leader=False,
       reason=STALE_TERM)``; otherwise ``accept_leader=True``.
    2. A snapshot holds committed entries only, through
       ``req.snapshot_index``. If that is not beyond your commit index
       (``req.commit_index``), you hold all of it already (the request was
       delayed or duplicated): do not install it (``install=False``).
    3. Otherwise install it (``install=True``): the state machine is reset
       to the snapshot's state. If your log has an entry at
       ``req.snapshot_index`` with term ``req.snapshot_term``, retain the
       entries following it (``keep_log_suffix=True``, step 6); otherwise
       discard the entire log (step 7).

    ``req.log.term_at(i)`` gives the term of your entry at ``i`` (None if
    you have none there).
    """
    raise NotImplementedError("install_snapshot is not written yet")
