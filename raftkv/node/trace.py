"""Step traces: every input of ``RaftNode.step`` and what it returned, on disk.

Theory of operation
-------------------
The core is deterministic: given the same construction inputs (id, address,
``RaftConfig``, ``PersistentState``, the seed of its ``random.Random`` and its
start time) and the same events at the same ``now``, it returns the same
effects and reaches the same state. With ``RAFT_TRACE=FILE`` the runtime's
driver hands every step to a :class:`TraceRecorder`, which appends it to FILE;
``raftkv replay`` (:mod:`raftkv.sim.playback.replay`) feeds the inputs to a
fresh core and checks the outputs.

The file is a sequence of frames: a 4-byte big-endian length and a msgpack
map. A ``start`` record (``"k": "start"``) opens every incarnation of the
node and holds the construction inputs; each ``step`` record (``"k":
"step"``) holds the event (none for ``RaftNode.start()``), the ``now`` it was
stepped at, the effects, a compact status after the step
(``NodeStatus.to_dict()`` values in the order the start record names) and
the driver batch it belongs to (the effects of a batch are carried out
together). A restart appends a new start record to the same file; a frame
cut short by a crash is dropped when the file is opened again.

Values are encoded generically (:func:`encode`): a dataclass of the core as
``{"@": name, "f": [fields...]}``, an enum as ``{"%": name, "v": value}``,
tuples as lists; the bulky ones faster: a Raft message as its wire body
(:mod:`raftkv.transport.codec`, ``{"M": bytes}``), a tuple of log entries
flattened (``{"E": [index, term, type, data, ...]}``) and so are the
proposals of a ``ProposeBatch`` (``{"P": [request_id, data, ...]}``). Anything
else — the runtime's opaque handles, such as the
backup store in ``RestoreUserSnapshot`` or a ``ServerList`` in a log record —
is kept as a description ``{"?": type, "s": text}`` and decodes to an
:class:`OpaqueHandle` carrying that description, so a replayed core hands the
same description back in its effects and the two compare equal.
"""

from __future__ import annotations

import dataclasses
import enum
import mmap
import os
import struct
import time
from typing import Any, BinaryIO, Iterator, cast

import msgpack

from raftkv.raft import configuration, effects, events, messages
from raftkv.raft.config import RaftConfig
from raftkv.raft.errors import RejectReason
from raftkv.raft.node import PersistentState
from raftkv.transport.codec import TYPE_CODES, decode_body, encode_body

__all__ = ["FORMAT", "VERSION", "STATUS_KEYS", "OpaqueHandle", "TraceRecorder", "TraceError",
           "encode", "decode", "read_records", "describe_event"]

FORMAT = "raftkv-trace"
VERSION = 1
# NodeStatus.to_dict() keys, in the order a step record lists their values
STATUS_KEYS = ("id", "state", "term", "last_log_index", "last_log_term", "commit_index",
               "applied_index", "last_snapshot_index", "last_snapshot_term", "last_contact",
               "leader_id", "leader_address", "configuration_index")

_FRAME = struct.Struct(">I")


class TraceError(Exception):
    """A trace file that cannot be read."""


@dataclasses.dataclass(frozen=True, slots=True)
class OpaqueHandle:
    """Stands in for a runtime object the core only carries around."""
    type: str
    description: str

    def __str__(self) -> str:
        return self.description


def _dataclasses_of(*modules) -> dict[str, type]:
    found: dict[str, type] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__:
                found[value.__name__] = value
    return found


_CLASSES: dict[str, type] = _dataclasses_of(events, effects, messages, configuration)
_CLASSES["RaftConfig"] = RaftConfig
_CLASSES["PersistentState"] = PersistentState
_ENUMS: dict[str, type] = {cls.__name__: cls for cls in (messages.EntryType, configuration.Suffrage,
                                                         configuration.ConfigCommand, RejectReason)}
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in dataclasses.fields(cls))
                                        for cls in _CLASSES.values()}
_PLAIN = frozenset((type(None), bool, int, float, str, bytes))
_MESSAGES = frozenset(cls for cls in TYPE_CODES if cls.__module__ == messages.__name__)
_Entry, _EntryType, _Propose = messages.Entry, messages.EntryType, events.Propose


def encode(value: Any) -> Any:
    """A msgpack-ready form of an event, effect, message or construction input."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is tuple or t is list:
        if value:
            # the bulk of a busy trace, flattened: entries and group-committed proposals
            first = type(value[0])
            if first is _Entry:
                return {"E": [x for e in value for x in (e.index, e.term, e.type.value, e.data)]}
            if first is _Propose:
                return {"P": [x for p in value for x in (p.request_id, p.data)]}
        return [encode(v) for v in value]
    if t in _MESSAGES:
        # the wire codec's generated encoders; the snapshot handle is not wire data
        if t is messages.InstallSnapshot:
            return {"M": encode_body(value), "d": encode(value.data)}
        return {"M": encode_body(value)}
    names = _FIELDS.get(t)
    if names is not None:
        return {"@": t.__name__, "f": [encode(getattr(value, n)) for n in names]}
    if t is OpaqueHandle:
        return {"?": value.type, "s": value.description}
    if isinstance(value, enum.Enum) and _ENUMS.get(t.__name__) is t:
        return {"%": t.__name__, "v": value.value}
    if isinstance(value, str):  # effects.Bare: prints the same
        return str(value)
    return {"?": t.__name__, "s": _describe(value)}


def _describe(value: Any) -> str:
    text = str(value)
    if text.startswith("<") and " at 0x" in text:
        # the default repr names a memory address, which says nothing
        path = getattr(value, "path", None)
        return f"{type(value).__name__}({path})" if isinstance(path, str) else type(value).__name__
    return text


def decode(value: Any) -> Any:
    """The object :func:`encode` was given (opaque values as ``OpaqueHandle``)."""
    if type(value) is list:
        return tuple(decode(v) for v in value)
    if type(value) is dict:
        if "M" in value:
            message = decode_body(value["M"])
            if "d" in value:
                message = dataclasses.replace(cast(Any, message), data=decode(value["d"]))
            return message
        if "E" in value:
            flat = value["E"]
            return tuple(_Entry(flat[i], flat[i + 1], _EntryType(flat[i + 2]), flat[i + 3])
                         for i in range(0, len(flat), 4))
        if "P" in value:
            flat = value["P"]
            return tuple(_Propose(flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        if "@" in value:
            cls = _CLASSES.get(value["@"])
            if cls is None:
                raise TraceError(f"unknown type {value['@']!r} in trace")
            return cls(*(decode(v) for v in value["f"]))
        if "%" in value:
            cls = _ENUMS.get(value["%"])
            if cls is None:
                raise TraceError(f"unknown enum {value['%']!r} in trace")
            return cls(value["v"])
        if "?" in value:
            return OpaqueHandle(value["?"], value["s"])
        raise TraceError(f"unexpected map in trace: {value!r}")
    return value


def describe_event(event: Any, node_id: str = "") -> str:
    """A short label for a trace header: ``Receive AppendEntries n2->n1``."""
    if event is None:
        return f"Start {node_id}".rstrip()
    t = type(event)
    if t is events.Tick:
        return "Tick"
    if t is events.Receive:
        return f"Receive {type(event.message).__name__} {event.from_id}->{node_id}"
    if t is events.ProposeBatch:
        return f"ProposeBatch x{len(event.proposals)}"
    if t is events.ChangeMembership:
        return f"ChangeMembership {event.command} {event.server_id}"
    if t is events.SnapshotTaken:
        return f"SnapshotTaken {event.meta.index}@{event.meta.term}"
    if t is events.Bootstrap:
        return f"Bootstrap voters={','.join(event.configuration.voters)}"
    return t.__name__


class TraceRecorder:
    """Appends a node's steps to a trace file (see the module docstring).

    Records are buffered in memory and written with one ``write`` per driver
    batch (:meth:`flush`), so a kill loses at most the batch being stepped."""

    def __init__(self, path: str) -> None:
        self.path = path
        _drop_partial_tail(path)
        self._file: BinaryIO = open(path, "ab", buffering=0)
        self._buffer: list[bytes] = []
        self._packer = msgpack.Packer(use_bin_type=True)
        self._seq = 0
        self._batch = 0
        self.steps = 0

    def start(self, node_id: str, address: str, config: RaftConfig, state: PersistentState,
              seed: Any, now: int) -> None:
        """A new incarnation: the core is built from exactly these."""
        self._seq = 0
        self._batch = 0
        self._write({"k": "start", "format": FORMAT, "version": VERSION, "id": node_id,
                     "address": address, "config": encode(config), "state": encode(state),
                     "seed": seed, "now": now, "wall": time.time(), "pid": os.getpid(),
                     "status_keys": list(STATUS_KEYS)})

    def step(self, event: Any, now: int | None, result: list, status, error: BaseException | None = None) -> None:
        """One ``step`` (``event`` None: ``RaftNode.start()``) and what it returned."""
        self._seq += 1
        self.steps += 1
        d = status.to_dict()
        self._write({"k": "step", "n": self._seq, "b": self._batch, "ev": encode(event), "now": now,
                     "fx": encode(result), "st": [d[k] for k in STATUS_KEYS], "t": status.now,
                     "err": None if error is None else f"{type(error).__name__}: {error}"})

    def _write(self, record: dict) -> None:
        body = self._packer.pack(record)
        self._buffer.append(_FRAME.pack(len(body)))
        self._buffer.append(body)

    def flush(self) -> None:
        """End of a driver batch: the steps so far reach the file."""
        self._batch += 1
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._file.write(data)

    def close(self) -> None:
        self.flush()
        self._file.close()


def _drop_partial_tail(path: str) -> None:
    """Cut a frame a crash left half-written, so the next start record is
    read as one."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return
    if size == 0:
        return
    with open(path, "r+b") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            offset = 0
            while offset + 4 <= size:
                (length,) = _FRAME.unpack_from(view, offset)
                if offset + 4 + length > size:
                    break
                offset += 4 + length
        if offset != size:
            f.truncate(offset)


def read_records(path: str) -> Iterator[dict]:
    """The records of a trace file in order; a frame cut short at the end
    (the node was killed while writing) is left out."""
    with open(path, "rb") as f:
        data = f.read()
    offset, size = 0, len(data)
    while offset + 4 <= size:
        (length,) = _FRAME.unpack_from(data, offset)
        end = offset + 4 + length
        if end > size:
            return
        try:
            record = msgpack.unpackb(data[offset + 4:end], raw=False, strict_map_key=False)
        except Exception as exc:
            raise TraceError(f"{path}: bad record at byte {offset}: {exc}") from None
        if not isinstance(record, dict) or "k" not in record:
            raise TraceError(f"{path}: not a raftkv trace (record at byte {offset})")
        yield record
        offset = end
