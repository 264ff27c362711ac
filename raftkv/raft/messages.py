"""Log entries and the RPCs Raft nodes exchange, named as in hashicorp/raft.

Theory of operation: every message is a frozen dataclass carrying the sender's
``term``. Responses echo what the requester needs to match them up without
keeping per-request state: ``AppendEntriesResponse`` says which
``prev_log_index`` it answers and which heartbeat ``read_seq`` it confirms.
The transport encodes these field by field; their order is the wire order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .configuration import Configuration


class EntryType(enum.IntEnum):
    COMMAND = 0        # a client command for the state machine
    NOOP = 1           # appended by every new leader (Raft §5.4.2 / §8)
    CONFIGURATION = 2  # data is an encoded Configuration


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    type: EntryType = EntryType.COMMAND
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    configuration: Configuration = field(default_factory=Configuration)
    configuration_index: int = 0
    id: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class RequestVote:
    term: int
    candidate_id: str
    candidate_address: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    leader_id: str
    leader_address: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    heartbeat: bool = False
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    term: int
    success: bool
    last_log_index: int   # the follower's last index (the backtracking hint)
    prev_log_index: int   # echoes the request, to ignore stale rejections
    match_index: int = 0  # on success: prev_log_index + len(entries)
    heartbeat: bool = False
    read_seq: int = 0
    volume: str = ""      # the follower's volume identity (the amnesia guard)


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Offer of a snapshot. The runtime streams the bytes beside this header;
    the core only ever sees the metadata (``data`` is the runtime's handle)."""
    term: int
    leader_id: str
    leader_address: str
    meta: SnapshotMeta
    data: object = None


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    term: int
    success: bool
    last_index: int
    volume: str = ""


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    term: int
    leader_id: str


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks the leader for the index its reads may be served at
    (one message per batch of reads; ``lease``: the leader may answer at
    once under its read lease). raftkv's own; hashicorp's protocol has none."""
    term: int
    seq: int          # the follower's number for this batch
    lease: bool = False


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    """The leader's answer: ``index`` once it confirmed it still leads, or
    ``success`` False if it does not (any more). ``index_term`` is the term
    of the leader's entry at ``index``: a follower holding that entry holds
    the leader's log up to it (Log Matching), so it knows it committed."""
    term: int
    seq: int
    index: int
    success: bool
    index_term: int = 0


Message = (RequestVote | RequestVoteResponse | AppendEntries | AppendEntriesResponse
           | InstallSnapshot | InstallSnapshotResponse | TimeoutNow | ReadIndexRequest | ReadIndexResponse)
