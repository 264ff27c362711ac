"""Raft's small durable state: current term, voted_for, and a few hints.

Theory of operation
-------------------
The state is a handful of fields written as one record, so it is rewritten
whole. ``path`` is a directory holding two alternating copies, ``stable.0``
and ``stable.1``. Each copy carries a sequence number and a CRC32::

    b"RKVSTBL1" | length (u32 BE) | crc32(payload) (u32 BE) | payload

where ``payload`` is msgpack ``{seq, term, voted_for, commit_hint, keys}``.
Write number ``seq`` goes to ``stable.<seq % 2>`` through a temp file that is
fsync'd, renamed into place, and made durable by fsyncing the directory.

Invariants:

1. Every write is durable when the call returns, and it only ever replaces
   the *older* copy, so the newest durable state survives any crash or
   torn write.
2. On load the newest copy whose magic, length and CRC check out wins. A
   corrupt newest copy falls back to the other one with a WARN (a torn write
   can only hit the copy being replaced); if copies exist but none is valid
   we refuse to start (``StableStoreCorruptError``, a
   :class:`~raftkv.storage.errors.StorageCorruptError`) rather than forget a
   vote and risk voting twice in one term.
3. ``current_term`` never goes backwards.

``commit_hint`` (the last index known applied) is only a restart hint, so
``set_commit_hint`` just records it; it reaches the disk with the next
``set_hard_state``, ``set`` or ``flush``.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib

import msgpack

from ._files import LogFn, fsync_dir, noop_log
from .errors import StorageCorruptError

MAGIC = b"RKVSTBL1"
_HEADER = struct.Struct(">II")
_RESERVED = frozenset({"term", "voted_for", "commit_hint"})
_MAX_PAYLOAD = 16 * 1024 * 1024


class StableStoreCorruptError(StorageCorruptError):
    """Stable state files exist but none of them is valid."""


class StableStore:
    """Durable term/vote store. ``path`` is a directory (created if missing)."""

    def __init__(self, path: str, log: LogFn | None = None):
        self.path = path
        self._log = log or noop_log
        self._lock = threading.Lock()
        self._seq = 0
        self._term = 0
        self._voted_for: str | None = None
        self._commit_hint = 0
        self._keys: dict[str, object] = {}
        self._hint_dirty = False
        os.makedirs(path, exist_ok=True)
        self.load()

    # ------------------------------------------------------------------ reads

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def commit_hint(self) -> int:
        return self._commit_hint

    def get(self, key: str, default: object = None) -> object:
        return self._keys.get(key, default)

    def load(self) -> dict:
        """(Re)read the disk and return ``{term, voted_for, commit_hint, **keys}``."""
        with self._lock:
            best = None
            bad = []
            for slot in (0, 1):
                name = "stable.%d" % slot
                try:
                    with open(os.path.join(self.path, name), "rb") as f:
                        raw = f.read(len(MAGIC) + _HEADER.size + _MAX_PAYLOAD + 1)
                except FileNotFoundError:
                    continue
                try:
                    state = self._decode(raw)
                except ValueError as exc:
                    bad.append((name, str(exc)))
                    continue
                if best is None or state["seq"] > best["seq"]:
                    best = state
            for name, error in bad:
                self._log("WARN", "stable store: ignoring corrupt state file",
                          [("name", name), ("error", error)])
            if best is None and bad:
                # the caller logs the refusal: one ERROR line, not two
                raise StableStoreCorruptError(
                    self.path, 0, "no valid copy of the term and vote (%s)"
                    % "; ".join("%s: %s" % b for b in bad))
            if best is not None:
                self._seq = best["seq"]
                self._term = best["term"]
                self._voted_for = best["voted_for"]
                self._commit_hint = best["commit_hint"]
                self._keys = dict(best["keys"])
            self._hint_dirty = False
            return self._snapshot()

    # ----------------------------------------------------------------- writes

    def set_hard_state(self, term: int, voted_for: str | None, rewind: bool = False) -> None:
        """Durably record (term, voted_for) before returning. ``rewind`` lets
        the term go backwards: only an operator's recovery may ask that."""
        if type(term) is not int or term < 0:
            raise ValueError("term must be a non-negative int, got %r" % (term,))
        if voted_for is not None and not isinstance(voted_for, str):
            raise ValueError("voted_for must be str or None, got %r" % (voted_for,))
        with self._lock:
            if term < self._term and not rewind:
                raise ValueError("term would go backwards: %d < %d" % (term, self._term))
            self._write(term, voted_for, self._keys)
            self._term = term
            self._voted_for = voted_for

    def set_commit_hint(self, index: int) -> None:
        """Remember the last applied index; written lazily."""
        with self._lock:
            if index != self._commit_hint:
                self._commit_hint = index
                self._hint_dirty = True

    def set(self, key: str, value: object) -> None:
        """Durably store a small msgpack-able value under ``key``."""
        if key in _RESERVED:
            raise ValueError("%r is reserved" % key)
        with self._lock:
            keys = dict(self._keys)
            keys[key] = value
            self._write(self._term, self._voted_for, keys)
            self._keys = keys

    def flush(self) -> None:
        """Write a pending commit hint, if any."""
        with self._lock:
            if self._hint_dirty:
                self._write(self._term, self._voted_for, self._keys)

    def close(self) -> None:
        self.flush()

    # -------------------------------------------------------------- internals

    def _snapshot(self) -> dict:
        out = dict(self._keys)
        out.update(term=self._term, voted_for=self._voted_for, commit_hint=self._commit_hint)
        return out

    @staticmethod
    def _decode(raw: bytes) -> dict:
        if len(raw) < len(MAGIC) + _HEADER.size or not raw.startswith(MAGIC):
            raise ValueError("bad magic or short file (%d bytes)" % len(raw))
        length, crc = _HEADER.unpack_from(raw, len(MAGIC))
        payload = raw[len(MAGIC) + _HEADER.size:]
        if length != len(payload):
            raise ValueError("length %d does not match %d payload bytes" % (length, len(payload)))
        if zlib.crc32(payload) != crc:
            raise ValueError("checksum mismatch")
        try:
            state = msgpack.unpackb(payload, raw=False)
        except Exception as exc:
            raise ValueError("undecodable payload: %s" % exc) from None
        if (not isinstance(state, dict) or type(state.get("seq")) is not int
                or type(state.get("term")) is not int
                or not isinstance(state.get("voted_for"), (str, type(None)))
                or type(state.get("commit_hint")) is not int
                or not isinstance(state.get("keys"), dict)):
            raise ValueError("payload has wrong shape")
        return state

    def _write(self, term: int, voted_for: str | None, keys: dict) -> None:
        # Memory is updated by the caller only after this succeeds, so a failed
        # write never leaves us believing in state that is not on disk.
        seq = self._seq + 1
        payload = msgpack.packb({
            "seq": seq,
            "term": term,
            "voted_for": voted_for,
            "commit_hint": self._commit_hint,
            "keys": keys,
        }, use_bin_type=True)
        data = MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        # seq alternates slots, so this never overwrites the newest copy.
        final = os.path.join(self.path, "stable.%d" % (seq % 2))
        tmp = final + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(self.path)
        self._seq = seq
        self._hint_dirty = False
