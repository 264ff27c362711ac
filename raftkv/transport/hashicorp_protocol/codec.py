"""hashicorp/raft 1.1.2's wire format (``net_transport.go``), mapped to raftkv's messages.

Theory of operation
-------------------
A request is one byte of RPC type followed by one msgpack object; the answer
is a msgpack string (the error, empty for none) followed by the response
object. There is no length prefix and no request id: answers come back in
request order on the connection that carried the request. An
InstallSnapshot request is followed on its connection by exactly ``Size``
raw bytes of snapshot.

The objects are Go structs as go-msgpack 0.5.5's default ``MsgpackHandle``
writes them, which the recorded frames in ``tests/transport/fixtures``
confirm: a map keyed by the Go field names *in sorted order*, the embedded
``RPCHeader`` flattened into it (``ProtocolVersion``), strings and ``[]byte``
both as legacy raw (fixraw/raw16/raw32, never str8 or bin), a nil slice as
nil and an empty one as an empty array (a heartbeat's ``Entries`` is nil).
``msgpack.packb(..., use_bin_type=False)`` of a dict built in that key order
gives the same bytes. Decoding is lenient where Go is (unknown keys are
ignored, a missing key is Go's zero value) and strict about types, because
the bytes come from the network: anything else raises :class:`CodecError`.

hashicorp/raft 1.1.2 names peers by address only (``Leader`` and
``Candidate`` are addresses), so decoding a request takes ``id_of(address)``
to name the sender as the core does, by server id.

What does not map one to one:

* entry types: raftkv's CONFIGURATION travels as ``LogConfiguration`` (5) with
  the configuration re-encoded as Go's ``{"Servers": [...]}``; a Go
  ``LogBarrier`` (4) becomes a NOOP (both mean "nothing to apply");
  the deprecated peer entries (2, 3) of protocol version < 3 are refused.
* suffrage: Go's ``Staging`` (2) is read as Nonvoter (it acts as one; 1.1.2's
  AddVoter never writes it).
* responses carry no echo of the request: :func:`decode_response` takes the
  request it answers and fills in what raftkv's core matches responses by
  (``prev_log_index``, ``match_index``, ``heartbeat``, ``read_seq``).
* a heartbeat is what hashicorp's transport calls one (term and leader set,
  nothing else): its zero commit index and previous entry are not information.
* TimeoutNow carries no term in 1.1.2: the caller supplies the term it last
  heard from that leader.
* pre-vote does not exist in 1.1.2: a pre-vote request cannot be encoded.
"""

from __future__ import annotations

from typing import Any, Callable

import msgpack

from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

from ..codec import CodecError

RPC_APPEND_ENTRIES = 0
RPC_REQUEST_VOTE = 1
RPC_INSTALL_SNAPSHOT = 2
RPC_TIMEOUT_NOW = 3
RPC_NAMES = {0: "AppendEntries", 1: "RequestVote", 2: "InstallSnapshot", 3: "TimeoutNow"}

PROTOCOL_VERSION = 3     # hashicorp/raft 1.x's ProtocolVersionMax
SNAPSHOT_VERSION = 1     # SnapshotVersionMax: the configuration travels in the request

LOG_COMMAND = 0
LOG_NOOP = 1
LOG_ADD_PEER_DEPRECATED = 2
LOG_REMOVE_PEER_DEPRECATED = 3
LOG_BARRIER = 4
LOG_CONFIGURATION = 5

_SUFFRAGE_OUT = {Suffrage.VOTER: 0, Suffrage.NONVOTER: 1}
_SUFFRAGE_IN = {0: Suffrage.VOTER, 1: Suffrage.NONVOTER, 2: Suffrage.NONVOTER}

IdOf = Callable[[str], str]


def pack(obj: Any) -> bytes:
    """go-msgpack's MsgpackHandle bytes for ``obj`` (a dict in Go's key order)."""
    return msgpack.packb(obj, use_bin_type=False)


# --- field access with Go's leniency and the network's strictness ----------

def _map(obj: Any, what: str) -> dict:
    if obj is None:
        return {}  # a nil pointer decodes as the zero struct
    if type(obj) is not dict:
        raise CodecError(f"{what}: expected a map, got {type(obj).__name__}")
    return obj


def _uint(m: dict, key: bytes, what: str) -> int:
    v = m.get(key, 0)
    if v is None:
        return 0
    if type(v) is not int or v < 0:
        raise CodecError(f"{what}.{key.decode()}: expected an unsigned integer, got {v!r:.40}")
    return v


def _bool(m: dict, key: bytes, what: str) -> bool:
    v = m.get(key, False)
    if v is None:
        return False
    if type(v) is not bool:
        raise CodecError(f"{what}.{key.decode()}: expected a bool, got {v!r:.40}")
    return v


def _bytes(m: dict, key: bytes, what: str) -> bytes | None:
    v = m.get(key)
    if v is not None and type(v) is not bytes:
        raise CodecError(f"{what}.{key.decode()}: expected raw bytes, got {type(v).__name__}")
    return v


def _text(m: dict, key: bytes, what: str) -> str:
    v = _bytes(m, key, what)
    if not v:
        return ""
    try:
        return v.decode()
    except UnicodeDecodeError:
        raise CodecError(f"{what}.{key.decode()}: not UTF-8") from None


# --- configuration ------------------------------------------------------------

def encode_configuration(configuration: Configuration) -> bytes:
    """hashicorp's EncodeConfiguration: ``{"Servers": [{Address, ID, Suffrage}]}``."""
    return pack({"Servers": [
        {"Address": s.address, "ID": s.id, "Suffrage": _SUFFRAGE_OUT[s.suffrage]}
        for s in configuration.servers
    ]})


def decode_configuration(data: bytes | None) -> Configuration:
    if not data:
        return Configuration()
    try:
        obj = msgpack.unpackb(data, raw=True, strict_map_key=False)
    except Exception as e:
        raise CodecError(f"malformed configuration: {type(e).__name__}: {e}") from None
    servers = _map(obj, "Configuration").get(b"Servers")
    if servers is None:
        return Configuration()
    if type(servers) is not list:
        raise CodecError("Configuration.Servers: expected an array")
    out = []
    for i, raw in enumerate(servers):
        what = f"Configuration.Servers[{i}]"
        s = _map(raw, what)
        suffrage = _SUFFRAGE_IN.get(_uint(s, b"Suffrage", what))
        if suffrage is None:
            raise CodecError(f"{what}.Suffrage: unknown value {s.get(b'Suffrage')!r}")
        server_id, address = _text(s, b"ID", what), _text(s, b"Address", what)
        if not server_id or not address:
            raise CodecError(f"{what}: empty ID or Address")
        out.append(Server(server_id, address, suffrage))
    return Configuration(tuple(out))


# --- log entries --------------------------------------------------------------

def encode_log(entry: Entry) -> dict:
    if entry.type is EntryType.CONFIGURATION:
        kind, data = LOG_CONFIGURATION, encode_configuration(Configuration.decode(entry.data))
    elif entry.type is EntryType.NOOP:
        kind, data = LOG_NOOP, entry.data or None
    else:
        kind, data = LOG_COMMAND, entry.data
    return {"Data": data, "Extensions": None, "Index": entry.index, "Term": entry.term, "Type": kind}


def decode_log(obj: Any, what: str = "Log") -> Entry:
    m = _map(obj, what)
    kind = _uint(m, b"Type", what)
    data = _bytes(m, b"Data", what) or b""
    index, term = _uint(m, b"Index", what), _uint(m, b"Term", what)
    if kind == LOG_COMMAND:
        return Entry(index, term, EntryType.COMMAND, data)
    if kind in (LOG_NOOP, LOG_BARRIER):
        return Entry(index, term, EntryType.NOOP, b"")
    if kind == LOG_CONFIGURATION:
        return Entry(index, term, EntryType.CONFIGURATION, decode_configuration(data).encode())
    raise CodecError(f"{what}.Type: log type {kind} is not supported (protocol version < 3?)")


# --- requests -----------------------------------------------------------------

def encode_request(message: object) -> bytes:
    """One request as it goes on the wire: the RPC type byte and the object."""
    kind = type(message)
    if kind is AppendEntries:
        if message.heartbeat:
            # hashicorp's heartbeat shape; a commit index travels only when
            # there is one (the core caps it at what the peer matches)
            entries = None
            prev_index = prev_term = 0
        else:
            entries = [encode_log(e) for e in message.entries]
            prev_index, prev_term = message.prev_log_index, message.prev_log_term
        body = {"Entries": entries, "Leader": message.leader_address.encode(),
                "LeaderCommitIndex": message.leader_commit, "PrevLogEntry": prev_index,
                "PrevLogTerm": prev_term, "ProtocolVersion": PROTOCOL_VERSION, "Term": message.term}
        return bytes([RPC_APPEND_ENTRIES]) + pack(body)
    if kind is RequestVote:
        if message.pre_vote:
            raise CodecError("cannot encode a pre-vote: hashicorp/raft 1.1.2 has no RequestPreVote RPC")
        body = {"Candidate": message.candidate_address.encode(), "LastLogIndex": message.last_log_index,
                "LastLogTerm": message.last_log_term, "LeadershipTransfer": message.leadership_transfer,
                "ProtocolVersion": PROTOCOL_VERSION, "Term": message.term}
        return bytes([RPC_REQUEST_VOTE]) + pack(body)
    if kind is InstallSnapshot:
        meta = message.meta
        body = {"Configuration": encode_configuration(meta.configuration),
                "ConfigurationIndex": meta.configuration_index, "LastLogIndex": meta.index,
                "LastLogTerm": meta.term, "Leader": message.leader_address.encode(), "Peers": None,
                "ProtocolVersion": PROTOCOL_VERSION, "Size": meta.size,
                "SnapshotVersion": SNAPSHOT_VERSION, "Term": message.term}
        return bytes([RPC_INSTALL_SNAPSHOT]) + pack(body)
    if kind is TimeoutNow:
        return bytes([RPC_TIMEOUT_NOW]) + pack({"ProtocolVersion": PROTOCOL_VERSION})
    raise CodecError(f"cannot encode {kind.__name__} as a hashicorp request")


def _check_header(m: dict, what: str) -> None:
    version = _uint(m, b"ProtocolVersion", what)
    if version > PROTOCOL_VERSION:
        raise CodecError(f"{what}: unsupported protocol version {version}")


def is_heartbeat(m: dict) -> bool:
    """hashicorp's NetworkTransport test for its heartbeat fast path."""
    return (m.get(b"Term", 0) != 0 and m.get(b"Leader") is not None
            and not m.get(b"PrevLogEntry") and not m.get(b"PrevLogTerm")
            and not m.get(b"Entries") and not m.get(b"LeaderCommitIndex"))


def decode_request(rpc_type: int, obj: Any, id_of: IdOf, timeout_now_term: int = 0) -> object:
    """The raftkv message for one hashicorp request. ``id_of`` names the
    sender's address as a server id; an InstallSnapshot's ``meta.size`` says
    how many raw bytes follow it on the connection."""
    what = RPC_NAMES.get(rpc_type, f"rpc {rpc_type}")
    m = _map(obj, what)
    if rpc_type != RPC_TIMEOUT_NOW:
        _check_header(m, what)
    if rpc_type == RPC_APPEND_ENTRIES:
        leader = _text(m, b"Leader", what)
        raw_entries = m.get(b"Entries")
        if raw_entries is not None and type(raw_entries) is not list:
            raise CodecError(f"{what}.Entries: expected an array")
        entries = tuple(decode_log(e, f"{what}.Entries[{i}]") for i, e in enumerate(raw_entries or ()))
        heartbeat = is_heartbeat(m)
        return AppendEntries(_uint(m, b"Term", what), id_of(leader), leader,
                             _uint(m, b"PrevLogEntry", what), _uint(m, b"PrevLogTerm", what), entries,
                             _uint(m, b"LeaderCommitIndex", what), heartbeat=heartbeat)
    if rpc_type == RPC_REQUEST_VOTE:
        candidate = _text(m, b"Candidate", what)
        return RequestVote(_uint(m, b"Term", what), id_of(candidate), candidate,
                           _uint(m, b"LastLogIndex", what), _uint(m, b"LastLogTerm", what),
                           leadership_transfer=_bool(m, b"LeadershipTransfer", what))
    if rpc_type == RPC_INSTALL_SNAPSHOT:
        if _uint(m, b"SnapshotVersion", what) < 1:
            raise CodecError(f"{what}: snapshot version 0 (peers without a configuration) is not supported")
        leader = _text(m, b"Leader", what)
        size = m.get(b"Size", 0)
        if type(size) is not int or size < 0:
            raise CodecError(f"{what}.Size: expected a non-negative integer, got {size!r:.40}")
        meta = SnapshotMeta(_uint(m, b"LastLogIndex", what), _uint(m, b"LastLogTerm", what),
                            decode_configuration(_bytes(m, b"Configuration", what)),
                            _uint(m, b"ConfigurationIndex", what), "", size)
        return InstallSnapshot(_uint(m, b"Term", what), id_of(leader), leader, meta)
    if rpc_type == RPC_TIMEOUT_NOW:
        return TimeoutNow(timeout_now_term, "")
    raise CodecError(f"unknown rpc type {rpc_type}")


# --- responses ----------------------------------------------------------------

def encode_response(message: object, error: str = "") -> bytes:
    """One answer as it goes on the wire: the error string, then the response."""
    kind = type(message)
    if kind is AppendEntriesResponse:
        body = {"LastLog": message.last_log_index, "NoRetryBackoff": False,
                "ProtocolVersion": PROTOCOL_VERSION, "Success": message.success, "Term": message.term}
    elif kind is RequestVoteResponse:
        if message.pre_vote:
            raise CodecError("cannot encode a pre-vote response for hashicorp/raft 1.1.2")
        body = {"Granted": message.granted, "Peers": None, "ProtocolVersion": PROTOCOL_VERSION,
                "Term": message.term}
    elif kind is InstallSnapshotResponse:
        body = {"ProtocolVersion": PROTOCOL_VERSION, "Success": message.success, "Term": message.term}
    elif message is None or kind is TimeoutNow:
        body = {"ProtocolVersion": PROTOCOL_VERSION}  # TimeoutNowResponse
    else:
        raise CodecError(f"cannot encode {kind.__name__} as a hashicorp response")
    return pack(error) + pack(body)


def response_type(message: object) -> int | None:
    """The RPC a raftkv response answers."""
    return {AppendEntriesResponse: RPC_APPEND_ENTRIES, RequestVoteResponse: RPC_REQUEST_VOTE,
            InstallSnapshotResponse: RPC_INSTALL_SNAPSHOT}.get(type(message))


def decode_response(request: object, error: Any, obj: Any) -> object | None:
    """The raftkv response to ``request`` (the raftkv message that was sent),
    from hashicorp's error string and response object; None for a
    TimeoutNow's (the core expects no answer). A non-empty error string
    raises :class:`RemoteError`."""
    if error not in (None, b"", ""):
        if type(error) is not bytes:
            raise CodecError(f"response error: expected a string, got {type(error).__name__}")
        raise RemoteError(error.decode(errors="replace"))
    kind = type(request)
    what = f"{kind.__name__}Response"
    m = _map(obj, what)
    if kind is AppendEntries:
        success = _bool(m, b"Success", what)
        if request.heartbeat:
            return AppendEntriesResponse(_uint(m, b"Term", what), success, _uint(m, b"LastLog", what), 0,
                                         heartbeat=True, read_seq=request.read_seq)
        match = request.prev_log_index + len(request.entries) if success else 0
        return AppendEntriesResponse(_uint(m, b"Term", what), success, _uint(m, b"LastLog", what),
                                     request.prev_log_index, match_index=match, read_seq=request.read_seq)
    if kind is RequestVote:
        return RequestVoteResponse(_uint(m, b"Term", what), _bool(m, b"Granted", what))
    if kind is InstallSnapshot:
        success = _bool(m, b"Success", what)
        return InstallSnapshotResponse(_uint(m, b"Term", what), success,
                                       request.meta.index if success else 0)
    if kind is TimeoutNow:
        return None
    raise CodecError(f"no response decoder for {kind.__name__}")


class RemoteError(Exception):
    """The peer answered an RPC with an error string (hashicorp's RPCResponse.Error)."""


# --- the byte stream ------------------------------------------------------------

class StreamDecoder:
    """Incremental reader of a hashicorp connection: requests (type byte +
    object) on the accepting side, answers (error + object) on the dialing
    side, and the raw snapshot bytes after an InstallSnapshot.

    ``push(data)`` buffers; ``next_request()`` / ``next_response()`` return a
    complete item or None; ``read_raw(n)`` takes up to ``n`` raw bytes already
    buffered. A malformed object raises CodecError and the stream is lost.
    """

    def __init__(self, max_buffer: int = 64 * 1024 * 1024) -> None:
        # Without caps msgpack sizes every length by the buffer: one header
        # could claim millions of elements. Go's MaxAppendEntries is at most
        # 1024; hashicorp's structs are maps of a dozen keys; Data (entries,
        # configurations) may be str or bin and as long as the frame; an
        # extension is at most a timestamp.
        self._unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=max_buffer,
                                          max_array_len=1024, max_map_len=64, max_str_len=max_buffer,
                                          max_bin_len=max_buffer, max_ext_len=64)
        self._rpc_type: int | None = None
        self._error: Any = _MISSING

    def push(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise CodecError("frame exceeds the buffer limit") from None

    def _next_object(self) -> Any:
        try:
            return self._unpacker.unpack()
        except msgpack.OutOfData:
            return _MISSING
        except Exception as e:
            raise CodecError(f"malformed msgpack: {type(e).__name__}: {e}") from None

    def next_request(self) -> tuple[int, Any] | None:
        if self._rpc_type is None:
            head = self._unpacker.read_bytes(1)
            if not head:
                return None
            self._rpc_type = head[0]
            if self._rpc_type not in RPC_NAMES:
                raise CodecError(f"unknown rpc type {self._rpc_type}")
        obj = self._next_object()
        if obj is _MISSING:
            return None
        rpc_type, self._rpc_type = self._rpc_type, None
        return rpc_type, obj

    def next_response(self) -> tuple[Any, Any] | None:
        if self._error is _MISSING:
            error = self._next_object()
            if error is _MISSING:
                return None
            self._error = error
        obj = self._next_object()
        if obj is _MISSING:
            return None
        error, self._error = self._error, _MISSING
        return error, obj

    def read_raw(self, n: int) -> bytes:
        return self._unpacker.read_bytes(n) if n > 0 else b""

    @property
    def mid_item(self) -> bool:
        """True if a request or answer was begun and not finished."""
        return self._rpc_type is not None or self._error is not _MISSING


_MISSING = object()
