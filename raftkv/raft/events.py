"""Inputs to :meth:`RaftNode.step`.

Theory of operation: everything that can happen to a Raft node is one of these
frozen dataclasses: time passing, a message arriving, a client asking for
something, or the runtime reporting that slow work it was asked to do is done.
``request_id`` values are chosen by the caller and come back in the effects
that answer them (``Proposed``, ``Rejected``, ``ReadReady``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .configuration import ConfigCommand, Configuration
from .messages import Message, SnapshotMeta


@dataclass(frozen=True, slots=True)
class Tick:
    now: int  # milliseconds on the caller's monotonic clock


@dataclass(frozen=True, slots=True)
class Receive:
    from_id: str
    message: Message


@dataclass(frozen=True, slots=True)
class Propose:
    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ProposeBatch:
    """Several proposals that arrived together: one log append, one fsync."""
    proposals: tuple[Propose, ...]


@dataclass(frozen=True, slots=True)
class ReadIndex:
    """A read's index: confirmed by a heartbeat round (ReadIndex), or with
    ``lease`` at once while the leader holds a read lease (:mod:`.lease`)."""
    request_id: int
    lease: bool = False


@dataclass(frozen=True, slots=True)
class ChangeMembership:
    request_id: int
    command: ConfigCommand
    server_id: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    request_id: int
    target_id: str | None = None


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Form a new cluster from an empty node (hashicorp BootstrapCluster).
    With ``wait_for_cluster`` the node first listens for one election
    timeout, and at least ``wait_at_least`` ms, and gives up bootstrapping
    if an existing cluster speaks to it: then it is a member whose volume
    was lost, not the first server. The floor lets a leader whose redials
    to the node have backed off reach it before it founds a cluster."""
    configuration: Configuration
    wait_for_cluster: bool = False
    wait_at_least: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotTaken:
    """The runtime durably stored a snapshot of the state machine."""
    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """Take a snapshot now (POST /snapshot), whatever the threshold says."""
    request_id: int


@dataclass(frozen=True, slots=True)
class SnapshotSendFailed:
    """Streaming a snapshot to ``peer_id`` failed; go back to probing."""
    peer_id: str


@dataclass(frozen=True, slots=True)
class RestoreUserSnapshot:
    """Replace the whole cluster's state with an uploaded backup (hashicorp
    Raft.Restore, ``POST /restore``). ``data`` is the runtime's handle to the
    already validated backup; the leader makes it a snapshot one past its
    last log index, so every follower gets it by InstallSnapshot."""
    request_id: int
    data: object


Event = (Tick | Receive | Propose | ProposeBatch | ReadIndex | ChangeMembership
         | TransferLeadership | Bootstrap | SnapshotTaken | SnapshotSendFailed
         | RequestSnapshot | RestoreUserSnapshot)
