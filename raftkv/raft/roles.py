"""State that exists only while a node is in one role.

Theory of operation: a follower keeps nothing beyond the node's own fields. A
candidate holds a :class:`CandidateState` (the votes of the round under way)
and a leader a :class:`LeaderState` (hashicorp's leaderState: replication
progress, the ReadIndex queue, queued membership changes, a leadership
transfer, its timers). The node holds at most one of them; the role is read
off which one it holds, so leaving a role drops its state in one assignment
and no leader-only field can outlive the leadership that filled it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import ChangeMembership
from .lease import LeaderLease
from .progress import Progress
from .quorum import quorum_value
from .read_only import ReadOnly

FOLLOWER = "Follower"
CANDIDATE = "Candidate"
LEADER = "Leader"
SHUTDOWN = "Shutdown"


class CandidateState:
    """One campaign: a pre-vote round (unless disabled or a transfer), then
    a vote round. Each round counts answers afresh."""
    __slots__ = ("leadership_transfer", "pre_vote", "granted", "refused")

    def __init__(self, leadership_transfer: bool) -> None:
        # a campaign started by TimeoutNow skips pre-vote and asks voters to
        # ignore their current leader (thesis §3.10)
        self.leadership_transfer = leadership_transfer
        self.pre_vote = False
        self.granted: set[str] = set()
        self.refused: set[str] = set()

    def start_round(self, pre_vote: bool) -> None:
        self.pre_vote = pre_vote
        self.granted = set()
        self.refused = set()

    def has_answered(self, voter: str) -> bool:
        return voter in self.granted or voter in self.refused

    def record(self, voter: str, granted: bool) -> None:
        (self.granted if granted else self.refused).add(voter)

    @property
    def tally(self) -> int:
        return len(self.granted)


@dataclass(slots=True)
class LeadershipTransfer:
    target: str
    deadline: int       # ms; refused as timed out after it
    request_id: int


class LeaderState:
    __slots__ = ("progress", "read_only", "first_index_of_term", "next_heartbeat", "next_lease_check",
                 "pending_config_changes", "transfer", "volumes_seen", "uncounted", "lease", "remote_reads",
                 "remote_read_ids")

    def __init__(self, first_index_of_term: int, next_heartbeat: int, next_lease_check: int,
                 lease: LeaderLease | None = None) -> None:
        self.progress: dict[str, Progress] = {}
        self.read_only = ReadOnly()
        # the index of this term's no-op: committed means every earlier entry is
        self.first_index_of_term = first_index_of_term
        self.next_heartbeat = next_heartbeat
        self.next_lease_check = next_lease_check
        # changes that arrived while the previous one was uncommitted (rule 4)
        self.pending_config_changes: list[ChangeMembership] = []
        self.transfer: LeadershipTransfer | None = None
        # rule 7: how many times a peer's volume was first seen or changed, and
        # the voters that count for nothing as of (configuration, that count)
        self.volumes_seen = 0
        self.uncounted: tuple = (None, -1, frozenset())
        # the read lease (lease.py), and the wait for the predecessor's
        self.lease = lease if lease is not None else LeaderLease(0)
        # followers' reads being confirmed: request id (negative) -> (follower, its seq)
        self.remote_reads: dict[int, tuple[str, int]] = {}
        self.remote_read_ids = 0

    def quorum_match_index(self, voters: tuple[str, ...], own_id: str, own_last_index: int,
                           uncounted: frozenset[str] = frozenset()) -> int:
        """The highest index a quorum of voters holds (the leader counts its
        own log); an ``uncounted`` voter holds nothing."""
        return quorum_value(self.match_indexes(voters, own_id, own_last_index, uncounted))

    def match_indexes(self, voters: tuple[str, ...], own_id: str, own_last_index: int,
                      uncounted: frozenset[str] = frozenset()) -> tuple[int, ...]:
        """What each voter holds, in ``voters``' order (see quorum_match_index)."""
        matches = []
        for voter in voters:
            if voter == own_id:
                matches.append(own_last_index)
            elif voter in self.progress and voter not in uncounted:
                matches.append(self.progress[voter].match_index)
            else:
                matches.append(0)
        return tuple(matches)

    def quorum_read_seq(self, voters: tuple[str, ...], own_id: str,
                        uncounted: frozenset[str] = frozenset()) -> int:
        """The newest heartbeat round a quorum of voters echoed."""
        acks = []
        for voter in voters:
            if voter == own_id:
                acks.append(self.read_only.started_seq)
            else:
                pr = self.progress.get(voter)
                acks.append(pr.acked_read_seq if pr and voter not in uncounted else 0)
        return quorum_value(acks)
