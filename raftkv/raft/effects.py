"""Outputs of :meth:`RaftNode.step`: what the caller must do, in order.

Theory of operation: persistence effects come first in the list and must be
durable before any ``Send`` leaves or any ``Apply`` / ``ReadReady`` /
``Proposed`` is acted on (see the package docstring). ``Log`` effects carry the
hashicorp message text and key/value pairs; :mod:`raftkv.observability.hclog`
renders them, so a simulated node prints exactly what a live node prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from .configuration import Configuration
from .errors import RejectReason  # noqa: F401  (callers read fx.RejectReason)
from .messages import Entry, Message, SnapshotMeta


class Bare(str):
    """A log value hclog prints with %v: an empty one prints nothing (``leader-id=``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PersistHardState:
    term: int
    voted_for: str | None


@dataclass(frozen=True, slots=True)
class AppendToLog:
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class TruncateLog:
    """Delete every entry with index >= from_index."""
    from_index: int


@dataclass(frozen=True, slots=True)
class CompactLog:
    """Delete every entry with index <= through_index (covered by a snapshot)."""
    through_index: int


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    address: str
    message: Message


@dataclass(frozen=True, slots=True)
class Apply:
    """Committed entries, in index order, for the state machine."""
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Proposed:
    """A proposal or membership change was appended at (index, term); it
    succeeds when the entry at that index with that term is applied."""
    request_id: int
    index: int
    term: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request cannot be served here. ``reason`` says why, for code to
    branch on; ``error`` says it for people (shown to users as it is).
    ``leader_id``/``leader_address`` name the known leader (for forwarding);
    ``unknown_outcome`` is true when the request may still take effect (e.g.
    leadership lost after appending)."""
    request_id: int
    reason: RejectReason
    error: str
    leader_id: str | None = None
    leader_address: str | None = None
    unknown_outcome: bool = False


@dataclass(frozen=True, slots=True)
class Completed:
    """A request without a log index (leadership transfer, snapshot) finished."""
    request_id: int


@dataclass(frozen=True, slots=True)
class ReadReady:
    """Linearizable read barrier passed: serve the read once index is applied
    (every Apply up to index precedes this effect)."""
    request_id: int
    index: int


@dataclass(frozen=True, slots=True)
class TakeSnapshot:
    """Capture the state machine now: it has applied exactly ``meta.index``."""
    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class RestoreSnapshot:
    """Replace the state machine with a snapshot: one received from the
    leader (``data`` is the runtime's handle from ``InstallSnapshot``) or a
    user's backup (the handle from ``RestoreUserSnapshot``; the runtime stores
    it as a snapshot under ``meta``). Must be durable before the log effects
    that follow it."""
    meta: SnapshotMeta
    data: object


@dataclass(frozen=True, slots=True)
class StateChanged:
    role: str            # "Follower" | "Candidate" | "Leader"
    term: int
    leader_id: str | None
    leader_address: str | None


@dataclass(frozen=True, slots=True)
class ConfigurationChanged:
    configuration: Configuration
    index: int


@dataclass(frozen=True, slots=True)
class Log:
    level: str           # TRACE | DEBUG | INFO | WARN | ERROR
    logger: str          # "raft", "raft.autopilot", ...
    message: str
    fields: tuple[tuple[str, object], ...] = ()


Effect = (PersistHardState | AppendToLog | TruncateLog | CompactLog | Send | Apply
          | Proposed | Rejected | Completed | ReadReady | TakeSnapshot | RestoreSnapshot
          | StateChanged | ConfigurationChanged | Log)
