"""Reference solution of exercise "snapshot" (Raft §7, Figure 13)."""

from raftkv.raft.rules import STALE_TERM, SnapshotDecision, SnapshotRequest


def install_snapshot(req: SnapshotRequest) -> SnapshotDecision:
    """Refuse an older term; skip a stale snapshot; keep a suffix that continues the snapshot."""
    if req.term < req.current_term:
        return SnapshotDecision(accept_leader=False, reason=STALE_TERM)
    if req.snapshot_index <= req.commit_index:
        return SnapshotDecision(accept_leader=True)
    ours = req.log.term_at(req.snapshot_index)
    keep = req.snapshot_index <= req.log.last_index and ours == req.snapshot_term
    return SnapshotDecision(accept_leader=True, install=True, keep_log_suffix=keep)
