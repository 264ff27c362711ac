"""Wire format of the raftkv transport: length-prefixed msgpack frames.

Theory of operation
-------------------
A frame is a 4-byte big-endian body length followed by a msgpack body. The
body is a list ``[type_code, field1, field2, ...]`` holding the message's
dataclass fields in declaration order (messages.py says its field order is the
wire order). Nested values are lists too: an ``Entry`` is ``[index, term, type,
data]``, a ``SnapshotMeta`` is ``[index, term, configuration, ...]``, a
``Configuration`` is a list of servers and a ``Server`` is ``[id, address,
suffrage]`` with the suffrage as its text ("Voter"/"Nonvoter").

Besides the Raft RPCs there are transport-control frames: ``Hello`` (first
frame of every connection: who is calling), ``SnapshotChunk`` (the snapshot
bytes that follow an ``InstallSnapshot`` header), ``SnapshotAck`` (the
receiver's verdict on a streamed snapshot), and ``AuthChallenge`` /
``AuthProof`` (the cluster-key handshake, see
``transport/raftkv_protocol/auth.py``). ``InstallSnapshot.data`` is a runtime
handle, never wire data: its slot is always nil and decodes as None.

Encoders and decoders are generated once, at import, from the dataclass
fields: the replication hot path then runs straight-line code (no per-field
reflection), and a field added to messages.py is carried without touching
this module. An annotation the generator does not understand fails the import,
so a new field type cannot be silently mis-encoded.

Decoding is strict, because the bytes come from the network: every body must
be a list of exactly the right length whose items have exactly the right
msgpack types (``True`` is not an int, ``str`` is not ``bytes``). Anything
else -- bad msgpack, an unknown type code, a wrong arity or type, an oversized
or truncated frame -- raises :class:`CodecError` and nothing else.

Unpacking is bounded before any type check, because msgpack builds every
object a body describes and a length prefix costs the sender one byte: a 6 MB
body of one-byte empty arrays is six million Python lists, about 450 MB. So:

* every msgpack length is capped by what a message can hold
  (``MAX_ARRAY_LEN`` elements, ``MAX_STR_LEN`` bytes of text, no maps, no
  extension types, binary up to the frame limit); a length over its cap is
  refused as soon as its header is read, before anything is allocated;
* a body over ``SMALL_BODY`` bytes is first walked without building anything
  (msgpack's header readers and ``skip``) and refused if it holds more than
  ``MAX_OBJECTS`` values: per-array caps alone still let nested arrays
  multiply. A body up to ``SMALL_BODY`` cannot expand to more than a few MB,
  so the hot path (heartbeats, answers, small batches) skips the walk.

A refusal is a CodecError naming the limit (``5000000 exceeds
max_array_len(1024)``), and the connection that sent it is closed.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, fields
from typing import Any

import msgpack

from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

MAGIC = "raftkv"
VERSION = 2  # 2: responses carry the volume identity, servers their volume
DEFAULT_MAX_FRAME = 8 * 1024 * 1024  # RAFT_MAX_FRAME's default
SNAPSHOT_CHUNK_SIZE = 1024 * 1024    # bytes of snapshot per SnapshotChunk frame
HEADER_SIZE = 4

# The longest list a message holds: an AppendEntries' entries, at most
# RAFT_MAX_APPEND_ENTRIES (whose upper bound this is, so that nodes of one
# cluster with different settings still accept each other's batches), or
# the servers of a configuration.
MAX_ARRAY_LEN = 1024
# Text is ids, addresses, magic, volume ids and error messages.
MAX_STR_LEN = 16 * 1024
# Values in one body: a full AppendEntries is 1 + 10 fields + 1024 entries of
# 1 + 4; a snapshot's configuration 1024 servers of 1 + 4.
MAX_OBJECTS = 64 + 8 * MAX_ARRAY_LEN
# Bodies up to this size are unpacked without the counting walk: at worst
# (one-byte empty arrays) they expand ~40x, a few MB, freed at once.
SMALL_BODY = 64 * 1024

_HEADER = struct.Struct(">I")
_MAX_BODY = 0xFFFFFFFF  # what the 4-byte length can express


class CodecError(Exception):
    """A frame could not be encoded or decoded. After a decoding error the
    byte stream has lost its framing: close the connection."""


# --- transport-control frames ------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on every connection. The receiver attributes everything
    that follows on the connection to ``node_id``."""
    magic: str
    version: int
    node_id: str
    node_address: str


def hello(node_id: str, node_address: str) -> Hello:
    return Hello(MAGIC, VERSION, node_id, node_address)


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """A piece of the snapshot streamed after an ``InstallSnapshot`` header;
    the last one has ``done=True`` (and may be empty)."""
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class SnapshotAck:
    """Receiver to sender, on the snapshot connection, after the last chunk:
    whether the snapshot was stored and handed to the node."""
    success: bool
    error: str


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """Acceptor to caller, right after the Hello, when the acceptor has a
    cluster key: prove you hold it by answering for this nonce."""
    nonce: bytes


@dataclass(frozen=True, slots=True)
class AuthProof:
    """The answer to an AuthChallenge: an HMAC over the other side's nonce,
    plus (from the caller) a nonce of its own that the acceptor answers in
    turn, so each side knows the other holds the key."""
    mac: bytes
    nonce: bytes


# Type codes are part of the protocol: never renumber, only add.
TYPE_CODES: dict[type, int] = {
    RequestVote: 1,
    RequestVoteResponse: 2,
    AppendEntries: 3,
    AppendEntriesResponse: 4,
    InstallSnapshot: 5,
    InstallSnapshotResponse: 6,
    TimeoutNow: 7,
    ReadIndexRequest: 8,
    ReadIndexResponse: 9,
    Hello: 64,
    SnapshotChunk: 65,
    SnapshotAck: 66,
    AuthChallenge: 67,
    AuthProof: 68,
}

# Values nested inside messages, encoded as plain lists (no type code).
_STRUCTS: dict[str, type] = {
    "Entry": Entry,
    "SnapshotMeta": SnapshotMeta,
    "Server": Server,
}

# Fields that exist in the dataclass but never travel: the slot stays nil.
_LOCAL_ONLY = {(InstallSnapshot, "data")}

_ENTRY_TYPES = {int(t): t for t in EntryType}
_SUFFRAGES = {s.value: s for s in Suffrage}


# --- generation of the per-class encoders and decoders ---------------------

class _Gen:
    """Builds Python source for one encoder expression / decoder statement per
    field, recursing into nested structs. ``n`` makes local names unique."""

    def __init__(self) -> None:
        self.n = 0

    def var(self, stem: str) -> str:
        self.n += 1
        return f"_{stem}{self.n}"

    def enc(self, ann: str, v: str) -> str:
        ann = ann.strip()
        if ann in ("int", "str", "bool", "bytes"):
            return v
        if ann == "EntryType":
            return v  # an IntEnum packs as its int
        if ann == "Suffrage":
            return f"{v}.value"
        if ann == "Configuration":
            return self.enc("tuple[Server, ...]", f"{v}.servers")
        if m := re.fullmatch(r"tuple\[(\w+), \.\.\.\]", ann):
            e = self.var("e")
            return f"[{self.enc(m.group(1), e)} for {e} in {v}]"
        if m := re.fullmatch(r"(\w+) \| None", ann):
            return f"(None if {v} is None else {self.enc(m.group(1), v)})"
        if ann in _STRUCTS:
            cls = _STRUCTS[ann]
            return "[" + ", ".join(self.enc(f.type, f"{v}.{f.name}") for f in fields(cls)) + "]"
        raise TypeError(f"codec: no wire encoding for annotation {ann!r}")

    def dec(self, ann: str, v: str, path: str, out: list[str], ind: str) -> str:
        """Append validation statements for value ``v`` to ``out`` and return
        the expression for the decoded value. ``path`` is a Python expression
        naming the value in error messages."""
        ann = ann.strip()
        if ann in ("int", "str", "bool", "bytes"):
            out.append(f"{ind}if type({v}) is not {ann}: _bad({path}, {ann!r}, {v})")
            return v
        if ann == "EntryType":
            r = self.var("t")
            out.append(f"{ind}{r} = _ENTRY_TYPES.get({v}) if type({v}) is int else None")
            out.append(f"{ind}if {r} is None: _bad({path}, 'entry type', {v})")
            return r
        if ann == "Suffrage":
            r = self.var("s")
            out.append(f"{ind}{r} = _SUFFRAGES.get({v}) if type({v}) is str else None")
            out.append(f"{ind}if {r} is None: _bad({path}, 'suffrage', {v})")
            return r
        if ann == "Configuration":
            return f"Configuration({self.dec('tuple[Server, ...]', v, path, out, ind)})"
        if m := re.fullmatch(r"tuple\[(\w+), \.\.\.\]", ann):
            # The fast path passes no element path; only when an element is
            # bad is the sequence walked again to name its index.
            fn = self.struct_decoder(m.group(1))
            r = self.var("q")
            out.append(f"{ind}if type({v}) is not list: _bad({path}, 'list', {v})")
            out.append(f"{ind}try:")
            out.append(f"{ind}    {r} = tuple([{fn}(_x, '') for _x in {v}])")
            out.append(f"{ind}except CodecError:")
            out.append(f"{ind}    _seq_error({fn}, {v}, {path})")
            return r
        if m := re.fullmatch(r"(\w+) \| None", ann):
            inner: list[str] = []
            r = self.var("o")
            expr = self.dec(m.group(1), v, path, inner, ind + "    ")
            out.append(f"{ind}if {v} is None:")
            out.append(f"{ind}    {r} = None")
            out.append(f"{ind}else:")
            out.extend(inner)
            out.append(f"{ind}    {r} = {expr}")
            return r
        if ann in _STRUCTS:
            return f"{self.struct_decoder(ann)}({v}, {path})"
        raise TypeError(f"codec: no wire decoding for annotation {ann!r}")

    def struct_decoder(self, name: str) -> str:
        if name not in _STRUCTS:
            raise TypeError(f"codec: no wire decoding for nested type {name!r}")
        return f"_dec_{name}"

    def decoder_source(self, cls: type, fn: str, offset: int) -> str:
        """A function ``fn(b, path)`` decoding list ``b`` whose fields start at
        ``offset`` (1 after a type code, 0 for nested structs)."""
        flds = fields(cls)
        arity = offset + len(flds)
        lines = [
            f"def {fn}(b, path={cls.__name__!r}):",
            "    if type(b) is not list: _bad(path, 'list', b)",
            f"    if len(b) != {arity}: _arity(path, {len(flds)}, len(b) - {offset})",
        ]
        args = []
        for i, f in enumerate(flds):
            v = f"_f{i}"
            lines.append(f"    {v} = b[{offset + i}]")
            p = f"path + {'.' + f.name!r}"
            if (cls, f.name) in _LOCAL_ONLY:
                lines.append(f"    if {v} is not None: _bad({p}, 'nil', {v})")
                args.append("None")
            else:
                args.append(self.dec(f.type, v, p, lines, "    "))
        lines.append(f"    return {cls.__name__}({', '.join(args)})")
        return "\n".join(lines) + "\n"

    def encoder_source(self, cls: type, fn: str, code: int) -> str:
        items = [str(code)]
        for f in fields(cls):
            if (cls, f.name) in _LOCAL_ONLY:
                items.append("None")
            else:
                items.append(self.enc(f.type, f"m.{f.name}"))
        return f"def {fn}(m):\n    return [{', '.join(items)}]\n"


def _bad(path: str, expected: str, value: Any) -> None:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    raise CodecError(f"{path}: expected {expected}, got {type(value).__name__} {shown}")


def _arity(path: str, expected: int, got: int) -> None:
    raise CodecError(f"{path}: expected {expected} fields, got {got}")


def _seq_error(fn: Any, items: list, path: str) -> None:
    for i, item in enumerate(items):
        fn(item, f"{path}[{i}]")
    raise CodecError(f"{path}: invalid sequence")


def _build() -> tuple[dict[type, Any], dict[int, Any], str]:
    gen = _Gen()
    namespace: dict[str, Any] = {
        "_bad": _bad, "_arity": _arity, "_ENTRY_TYPES": _ENTRY_TYPES,
        "_SUFFRAGES": _SUFFRAGES, "Configuration": Configuration,
        "CodecError": CodecError, "_seq_error": _seq_error,
    }
    parts = []
    for name, cls in _STRUCTS.items():
        namespace[name] = cls
        parts.append(gen.decoder_source(cls, f"_dec_{name}", 0))
    for cls, code in TYPE_CODES.items():
        namespace[cls.__name__] = cls
        parts.append(gen.encoder_source(cls, f"_enc_{cls.__name__}", code))
        parts.append(gen.decoder_source(cls, f"_decode_{cls.__name__}", 1))
    source = "\n".join(parts)
    exec(compile(source, "<raftkv.transport.codec generated>", "exec"), namespace)
    encoders = {cls: namespace[f"_enc_{cls.__name__}"] for cls in TYPE_CODES}
    decoders = {code: namespace[f"_decode_{cls.__name__}"] for cls, code in TYPE_CODES.items()}
    return encoders, decoders, source


_ENCODERS, _DECODERS, GENERATED_SOURCE = _build()
"""GENERATED_SOURCE is kept for reading and debugging the generated code."""


# --- public API ---------------------------------------------------------------

def encode_body(message: object) -> bytes:
    """The msgpack body of ``message`` (no length prefix)."""
    enc = _ENCODERS.get(type(message))
    if enc is None:
        raise CodecError(f"cannot encode {type(message).__name__}: not a wire message")
    try:
        return msgpack.packb(enc(message), use_bin_type=True)
    except Exception as e:  # e.g. an int beyond 64 bits, a str field holding bytes
        raise CodecError(f"cannot encode {type(message).__name__}: {e}") from None


def encode(message: object) -> bytes:
    """The whole frame: 4-byte big-endian length + msgpack body."""
    body = encode_body(message)
    if len(body) > _MAX_BODY:
        raise CodecError(f"cannot encode {type(message).__name__}: body of {len(body)} bytes")
    return _HEADER.pack(len(body)) + body


def _prefix(cls: type) -> bytes:
    """The bytes every body of ``cls`` begins with: its array header and type code."""
    arity = len(fields(cls)) + 1
    return msgpack.packb([TYPE_CODES[cls]] + [None] * (arity - 1))[:-(arity - 1)]


# The only messages whose body may exceed SMALL_BODY: entries, a snapshot's
# configuration, snapshot bytes.
_LARGE_PREFIXES = tuple(_prefix(cls) for cls in (AppendEntries, InstallSnapshot, SnapshotChunk))
_LARGE_PREFIX_LEN = max(len(p) for p in _LARGE_PREFIXES)

_WALK_STEP = 256 * 1024

# msgpack's first byte of an array (fixarray, array 16, array 32)
_ARRAY_HEAD = bytes(1 if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD) else 0 for b in range(256))


def _refused(e: Exception) -> CodecError:
    text = str(e)
    if isinstance(e, ValueError) and " exceeds max_" in text:
        return CodecError(f"refused msgpack body: {text}")
    return CodecError(f"malformed msgpack body: {type(e).__name__}: {text}")


def _count_values(body: bytes | bytearray | memoryview, max_bin_len: int) -> None:
    """Walk ``body``'s msgpack structure without building it; CodecError if
    it holds more than MAX_OBJECTS values or breaks a length cap. Each step
    reads at least one byte and counts at least one value, so the walk is
    bounded by MAX_OBJECTS steps. The body is fed to the unpacker a piece at
    a time: its buffer holds the largest single value, not a second copy of
    the body."""
    up = msgpack.Unpacker(max_buffer_size=max(len(body), 1), max_array_len=MAX_ARRAY_LEN, max_map_len=0,
                          max_str_len=MAX_STR_LEN, max_bin_len=max_bin_len, max_ext_len=0)
    tell, array_header, skip, is_array = up.tell, up.read_array_header, up.skip, _ARRAY_HEAD
    view = memoryview(body)
    size, fed = len(body), 0
    budget, todo = MAX_OBJECTS, 1
    try:
        while todo:
            todo -= 1
            if is_array[body[tell()]]:  # an IndexError past the end: truncated
                while True:
                    try:
                        n = array_header()
                        break
                    except msgpack.OutOfData:
                        if fed >= size:
                            raise
                        up.feed(view[fed:fed + _WALK_STEP])
                        fed += _WALK_STEP
                if n > MAX_ARRAY_LEN:  # read_array_header does not check it
                    raise CodecError(f"refused msgpack body: {n} exceeds max_array_len({MAX_ARRAY_LEN})")
                budget -= n
                if budget < 0:
                    raise CodecError(f"refused msgpack body: more than {MAX_OBJECTS} values "
                                     f"in a body of {size} bytes (max_objects({MAX_OBJECTS}))")
                todo += n
            else:
                while True:
                    try:
                        skip()
                        break
                    except msgpack.OutOfData:
                        if fed >= size:
                            raise
                        up.feed(view[fed:fed + _WALK_STEP])
                        fed += _WALK_STEP
    except (ValueError, IndexError, msgpack.UnpackException) as e:  # a cap, bad bytes, the end
        raise _refused(e) from None
    finally:
        view.release()


def decode_body(body: bytes | bytearray | memoryview, max_bin_len: int | None = None) -> object:
    """Decode one frame body (no length prefix). Raises only CodecError.
    ``max_bin_len`` caps binary values (entry data, snapshot chunks); by
    default the body's own length."""
    if max_bin_len is None:
        max_bin_len = len(body)
    if len(body) > SMALL_BODY:
        _count_values(body, max_bin_len)
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True,
                              max_array_len=MAX_ARRAY_LEN, max_map_len=0, max_str_len=MAX_STR_LEN,
                              max_bin_len=max_bin_len, max_ext_len=0)
    except Exception as e:
        raise _refused(e) from None
    if type(obj) is not list or not obj:
        _bad("frame", "non-empty list", obj)
    code = obj[0]
    dec = _DECODERS.get(code) if type(code) is int else None
    if dec is None:
        raise CodecError(f"unknown message type code {code!r}")
    try:
        return dec(obj)
    except CodecError:
        raise
    except Exception as e:  # a constructor rejecting a value; keep the contract
        raise CodecError(f"invalid {type(obj).__name__} body: {type(e).__name__}: {e}") from None


class FrameDecoder:
    """Incremental frame parser for a byte stream.

    ``push(data)`` buffers bytes; ``pop()`` returns the next complete message
    or None. ``feed(data)`` does both and returns every complete message.
    An oversized length is rejected as soon as its 4-byte prefix arrives, so
    a hostile peer cannot make us buffer it; so is a length over SMALL_BODY
    as soon as the body's first bytes show a message that is never that long
    (a 6 MB "array of millions" is refused after 6 bytes). After a CodecError the decoder
    stays broken (the stream has lost its framing) and re-raises it.
    """

    __slots__ = ("max_frame", "_buf", "_pos", "_error")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0
        self._error: CodecError | None = None

    def push(self, data: bytes) -> None:
        self._buf += data

    def pop(self) -> object | None:
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail >= HEADER_SIZE:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > self.max_frame:
                self._fail(CodecError(f"frame of {length} bytes exceeds the limit of {self.max_frame}"))
            start = pos + HEADER_SIZE
            if (length > SMALL_BODY and avail >= HEADER_SIZE + _LARGE_PREFIX_LEN
                    and not buf.startswith(_LARGE_PREFIXES, start)):
                self._fail(CodecError(f"frame of {length} bytes exceeds the limit of {SMALL_BODY} for "
                                      "anything but AppendEntries, InstallSnapshot and SnapshotChunk"))
            if avail - HEADER_SIZE >= length:
                end = start + length
                # decoded in place: a copy of the body would double what a
                # large frame costs
                try:
                    with memoryview(buf) as view, view[start:end] as body:
                        msg = decode_body(body, self.max_frame)
                except CodecError as e:
                    self._fail(e)
                if end == len(buf):
                    buf.clear()
                    self._pos = 0
                else:
                    self._pos = end
                return msg
        if pos:
            del buf[:pos]  # compact once per exhausted batch, not per frame
            self._pos = 0
        return None

    def feed(self, data: bytes) -> list:
        """Buffer ``data`` and return all messages now complete. Raises
        CodecError at the first bad frame; messages before it in the same
        call are lost, so use push()/pop() where that matters."""
        self.push(data)
        out = []
        while (m := self.pop()) is not None:
            out.append(m)
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for more data."""
        return len(self._buf) - self._pos

    def eof(self) -> None:
        """The stream ended: an incomplete frame means it was truncated."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            self._fail(CodecError(f"truncated frame: stream ended with {self.buffered} bytes of an incomplete frame"))

    def _fail(self, error: CodecError) -> None:
        self._error = error
        self._buf = bytearray()
        self._pos = 0
        raise error


async def read_frame(reader, max_frame: int = DEFAULT_MAX_FRAME) -> object | None:
    """Read one message from an asyncio StreamReader; None on a clean EOF at
    a frame boundary. Raises CodecError on a bad or truncated frame."""
    import asyncio  # local: the codec itself has no asyncio dependency

    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise CodecError(f"truncated frame: stream ended inside a length prefix ({len(e.partial)} bytes)") from None
    (length,) = _HEADER.unpack(header)
    if length > max_frame:
        raise CodecError(f"frame of {length} bytes exceeds the limit of {max_frame}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise CodecError(f"truncated frame: got {len(e.partial)} of {length} body bytes") from None
    return decode_body(body, max_frame)
