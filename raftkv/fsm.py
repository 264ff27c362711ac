"""The key-value state machine that Raft replicates.

Theory of operation
-------------------
``KVStore`` is a dict of str -> str driven only by committed log entries.
Commands are msgpack arrays built by the ``encode_*`` functions:

    ["set", key, value]     -> None
    ["del", key]            -> bool (whether the key existed)
    ["setm", {key: value}]  -> int (number of keys written)

Invariants:

1. Determinism: the same entries in the same order give the same state on
   every node, so ``apply`` depends on nothing but its arguments and state.
2. A malformed command changes nothing. It is still a committed entry, so it
   still advances ``applied_index``, and ``apply`` *returns* (does not raise)
   a ``CommandError`` that the runtime hands back to the client. ``setm`` is
   validated whole before any key is written: all or nothing.
3. ``apply`` ignores indexes at or below ``applied_index``: those effects are
   already in the state (e.g. restored from a snapshot), and applying a
   ``del`` twice would report the wrong result.
4. Snapshots are cheap for the writer: ``snapshot()`` copies the dict (a
   shallow copy: keys and values are immutable str) and returns a function
   that streams that frozen copy, which may run on another thread while
   ``apply`` continues. The stream is a msgpack header
   ``{format, version, applied_index, count}`` followed by maps of up to
   10,000 pairs (fewer when the values are large).
5. ``restore`` builds a complete new dict from the stream, checks it against
   the header, and only then swaps it in; a bad stream leaves the old state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import BinaryIO, Protocol

import msgpack

LogFn = Callable[[str, str, list], None]

OP_SET = "set"
OP_DELETE = "del"
OP_SET_MANY = "setm"

SNAPSHOT_FORMAT = "raftkv-kv"
SNAPSHOT_VERSION = 1
BATCH_PAIRS = 10_000
BATCH_BYTES = 4 * 1024 * 1024
# One msgpack object (a batch, or one huge value) must fit in the unpacker.
_MAX_OBJECT = 512 * 1024 * 1024


class CommandError(Exception):
    """A command that cannot be applied (malformed or of the wrong types)."""


class SnapshotFormatError(Exception):
    """A snapshot stream that is not a valid KVStore snapshot."""


class _Writer(Protocol):
    def write(self, data: bytes) -> object: ...


def _noop_log(level: str, message: str, fields: list) -> None:
    pass


def _check_str(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError("%s must be str, got %s" % (what, type(value).__name__))


def encode_set(key: str, value: str) -> bytes:
    _check_str("key", key)
    _check_str("value", value)
    return msgpack.packb([OP_SET, key, value], use_bin_type=True)


def encode_delete(key: str) -> bytes:
    _check_str("key", key)
    return msgpack.packb([OP_DELETE, key], use_bin_type=True)


def encode_set_many(mapping: Mapping[str, str]) -> bytes:
    for key, value in mapping.items():
        _check_str("key", key)
        _check_str("value", value)
    return msgpack.packb([OP_SET_MANY, dict(mapping)], use_bin_type=True)


def _all_str(mapping: dict) -> bool:
    return all(type(k) is str and type(v) is str for k, v in mapping.items())


class KVStore:
    """The replicated dictionary. See the module docstring."""

    def __init__(self, log: LogFn | None = None):
        self._log = log or _noop_log
        self._data: dict[str, str] = {}
        self.applied_index = 0

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # ----------------------------------------------------------------- writes

    def apply(self, index: int, data: bytes) -> object:
        """Apply the command committed at ``index``; see the module docstring
        for return values. Malformed commands return a ``CommandError``."""
        if index <= self.applied_index:
            return None
        self.applied_index = index
        try:
            cmd = msgpack.unpackb(data, raw=False, use_list=True)
        except Exception as exc:  # msgpack raises many types on garbage
            return self._reject(index, CommandError("undecodable command: %s" % exc))
        if not isinstance(cmd, list) or not cmd:
            return self._reject(index, CommandError("command is not a non-empty array"))
        op = cmd[0]
        if op == OP_SET and len(cmd) == 3:
            key, value = cmd[1], cmd[2]
            if type(key) is not str or type(value) is not str:
                return self._reject(index, CommandError("set: key and value must be strings"))
            self._data[key] = value
            return None
        if op == OP_DELETE and len(cmd) == 2:
            key = cmd[1]
            if type(key) is not str:
                return self._reject(index, CommandError("del: key must be a string"))
            return self._data.pop(key, None) is not None
        if op == OP_SET_MANY and len(cmd) == 2:
            mapping = cmd[1]
            if not isinstance(mapping, dict) or not _all_str(mapping):
                return self._reject(index, CommandError("setm: expected a map of strings"))
            self._data.update(mapping)
            return len(mapping)
        return self._reject(index, CommandError("unknown command %r" % (op,)))

    def adopt(self, other: "KVStore", applied_index: int, keep_prefix: str | None = None) -> None:
        """Take over ``other``'s whole state as of ``applied_index``: how a
        user's backup, restored and checked off to the side, goes live. Keys
        under ``keep_prefix`` describe this cluster, not the backup's, so
        ours are kept and the backup's dropped."""
        data = other._data
        if keep_prefix is not None:
            data = {k: v for k, v in data.items() if not k.startswith(keep_prefix)}
            data.update((k, v) for k, v in self._data.items() if k.startswith(keep_prefix))
        self._data = data
        self.applied_index = applied_index
        self._log("INFO", "restored backup", [("applied-index", applied_index), ("keys", len(self._data))])

    def mark_applied(self, index: int) -> None:
        """Advance ``applied_index`` past an entry with no state effect
        (a leader's no-op or a configuration change)."""
        if index > self.applied_index:
            self.applied_index = index

    def _reject(self, index: int, error: CommandError) -> CommandError:
        self._log("WARN", "rejected malformed command", [("index", index), ("error", str(error))])
        return error

    # -------------------------------------------------------------- snapshots

    def snapshot(self) -> Callable[[_Writer], int]:
        """Capture the current state; the returned function streams it to
        ``writer.write`` and returns the number of bytes written."""
        data = self._data.copy()
        applied_index = self.applied_index

        def persist(writer: _Writer) -> int:
            packer = msgpack.Packer(use_bin_type=True)
            chunk = packer.pack({
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "applied_index": applied_index,
                "count": len(data),
            })
            writer.write(chunk)
            total = len(chunk)
            batch: dict[str, str] = {}
            batch_bytes = 0
            for key, value in data.items():
                batch[key] = value
                batch_bytes += len(key) + len(value)
                if len(batch) >= BATCH_PAIRS or batch_bytes >= BATCH_BYTES:
                    chunk = packer.pack(batch)
                    writer.write(chunk)
                    total += len(chunk)
                    batch = {}
                    batch_bytes = 0
            if batch:
                chunk = packer.pack(batch)
                writer.write(chunk)
                total += len(chunk)
            return total

        return persist

    def restore(self, reader: BinaryIO) -> None:
        """Replace the whole state with a snapshot streamed from ``reader``."""
        unpacker = msgpack.Unpacker(reader, raw=False, max_buffer_size=_MAX_OBJECT,
                                    read_size=1024 * 1024)
        try:
            header = next(unpacker)
        except StopIteration:
            raise SnapshotFormatError("empty snapshot") from None
        except Exception as exc:
            raise SnapshotFormatError("unreadable snapshot header: %s" % exc) from None
        if (not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT
                or header.get("version") != SNAPSHOT_VERSION
                or type(header.get("applied_index")) is not int
                or type(header.get("count")) is not int):
            raise SnapshotFormatError("not a %s v%d snapshot header: %r"
                                      % (SNAPSHOT_FORMAT, SNAPSHOT_VERSION, header))
        new: dict[str, str] = {}
        try:
            for batch in unpacker:
                if not isinstance(batch, dict) or not _all_str(batch):
                    raise SnapshotFormatError("snapshot batch is not a map of strings")
                new.update(batch)
        except SnapshotFormatError:
            raise
        except Exception as exc:
            raise SnapshotFormatError("corrupt snapshot body: %s" % exc) from None
        if len(new) != header["count"]:
            raise SnapshotFormatError("snapshot holds %d keys, header says %d"
                                      % (len(new), header["count"]))
        self._data = new
        self.applied_index = header["applied_index"]
        self._log("INFO", "restored snapshot", [("applied-index", self.applied_index),
                                                ("keys", len(new))])
