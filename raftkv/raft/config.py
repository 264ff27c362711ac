"""The core's timing and sizing knobs (hashicorp/raft's Config names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RaftConfig:
    """Timing and sizing, in milliseconds and entries (hashicorp's names)."""
    heartbeat_timeout: int = 1000
    election_timeout: int = 1000
    leader_lease_timeout: int = 500
    commit_timeout: int = 50
    max_append_entries: int = 64
    # An AppendEntries also stops at this many bytes of entry data (it holds
    # at least one entry), so that it fits the transport's frame limit.
    max_append_bytes: int = 8 * 1024 * 1024 - 64 * 1024
    max_inflight: int = 2
    snapshot_threshold: int = 8192
    snapshot_interval: int = 120_000
    trailing_logs: int = 10240
    # The log lives in memory (hashicorp's is on disk): once this many
    # entries were applied since the last snapshot, one is taken at once
    # instead of at the next SnapshotInterval check, which bounds it.
    snapshot_log_limit: int = 65536
    # The same bound in bytes of entry data, for large entries; compaction
    # also keeps fewer than TrailingLogs entries when those hold more.
    snapshot_log_bytes: int = 32 * 1024 * 1024
    pre_vote: bool = True
    check_quorum: bool = True
    # read leases (raftkv/raft/lease.py): how long a commit lets the leader
    # serve reads without a heartbeat round (0: no lease reads), the largest
    # rate by which a node's monotonic clock may run fast or slow, and a
    # margin in ms on either side
    read_lease: int = 500
    # a follower asks the leader for its reads' index and serves them itself
    # (raftkv's protocol only: ReadIndexRequest)
    follower_reads: bool = True
    lease_drift: float = 0.01
    lease_margin: int = 5

    @property
    def heartbeat_interval(self) -> int:
        # hashicorp sends heartbeats every HeartbeatTimeout/10
        return max(1, self.heartbeat_timeout // 10)
