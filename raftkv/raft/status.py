"""Read-only snapshots of a node's state, for everything outside the core.

Theory of operation: the runtime, metrics, autopilot and dashboard never read
the core's mutable attributes; they ask :meth:`RaftNode.status` for a
:class:`NodeStatus` (as hashicorp's ``Stats()`` and etcd's ``Status()`` do).
A status is frozen and shares nothing mutable with the node, so it may be kept,
compared and read from another task while the node moves on. Times are in the
core's own milliseconds: ``now`` is its clock when the status was taken, and
every ``last_contact`` is an age relative to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .configuration import Configuration, Suffrage
from .roles import LEADER


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """How the leader replicates to one other server of its configuration."""
    id: str
    address: str
    suffrage: Suffrage
    match_index: int        # highest index known replicated on the peer
    next_index: int         # next index the leader will send it
    last_contact: int       # ms since the peer last answered (or since leadership began)
    state: str              # "probe" | "pipeline" | "snapshot" (ProgressState values)
    inflight: int           # batches sent and not yet acknowledged
    snapshot_index: int     # index of the snapshot being sent (state "snapshot"), else 0
    volume: str = ""        # the volume identity the peer last answered from

    @property
    def is_voter(self) -> bool:
        return self.suffrage is Suffrage.VOTER


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: str
    address: str
    role: str                       # "Follower" | "Candidate" | "Leader"
    term: int
    leader_id: str | None
    leader_address: str | None
    first_index: int                # first index the in-memory log holds
    last_log_index: int
    last_log_term: int
    base_term: int                  # term of the entry at first_index - 1 (compacted)
    commit_index: int
    last_applied: int
    last_snapshot_index: int
    last_snapshot_term: int
    configuration: Configuration    # the latest, in force whether committed or not
    configuration_index: int
    committed_configuration: Configuration
    committed_configuration_index: int
    last_contact: int               # ms since the leader was heard; 0 on a leader, -1 if no leader
    committed_in_term: bool         # a leader whose no-op of this term is committed
    transfer_target: str | None     # a leader handing over leadership: to whom
    now: int                        # the core's clock, ms
    peers: tuple[PeerStatus, ...]   # on a leader only: every other server, in configuration order
    volume_id: str = ""             # this node's volume identity
    amnesia_guard: str | None = None  # why this node may not vote now (rule 7), or None
    voted_for: str | None = None    # whom this node voted for in its current term
    election_deadline: int = 0      # core ms at which a follower's or candidate's election timer runs out
    pre_vote: bool = False          # a candidate asking for pre-votes, not yet for votes
    leader_commit: int = 0          # the highest commit index a leader announced to it (a leader: its own)

    @property
    def is_leader(self) -> bool:
        return self.role == LEADER

    @property
    def last_index(self) -> int:
        """The log's last index (``RaftLog.last_index``), same as last_log_index."""
        return self.last_log_index

    @property
    def base_index(self) -> int:
        """The last index compacted away; the log holds entries after it."""
        return self.first_index - 1

    def peer(self, server_id: str) -> PeerStatus | None:
        for peer in self.peers:
            if peer.id == server_id:
                return peer
        return None

    def to_dict(self) -> dict:
        """The JSON shape ``/status`` has always served from the core."""
        return {
            "id": self.id,
            "state": self.role,
            "term": self.term,
            "last_log_index": self.last_log_index,
            "last_log_term": self.last_log_term,
            "commit_index": self.commit_index,
            "applied_index": self.last_applied,
            "last_snapshot_index": self.last_snapshot_index,
            "last_snapshot_term": self.last_snapshot_term,
            "last_contact": self.last_contact,
            "leader_id": self.leader_id,
            "leader_address": self.leader_address,
            "configuration_index": self.configuration_index,
            "volume_id": self.volume_id,
            "amnesia_guard": self.amnesia_guard,
        }
