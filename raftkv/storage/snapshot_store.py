"""Snapshots of the state machine on disk, one directory per snapshot.

Theory of operation
-------------------
Each snapshot is a directory ``<term>-<index>-<unix ms>`` under the store's
directory (callers pass ``RAFT_VOLUME_DIR/snapshots``), holding::

    state.bin   the state machine's bytes, streamed in by the writer
    meta.json   index, term, configuration (Configuration.encode's JSON),
                configuration_index, size and crc32 of state.bin

The directory name is the snapshot's id (``SnapshotMeta.id``), as in
hashicorp's file snapshot store.

Invariants:

1. A snapshot is visible only when complete: a writer streams into
   ``<id>.tmp``; ``close`` fsyncs the data, writes and fsyncs ``meta.json``,
   fsyncs the directory, renames it to ``<id>`` and fsyncs the parent. A crash
   at any point leaves either a finished snapshot or a ``.tmp`` leftover,
   which the next start removes (WARN ``found temporary snapshot``).
2. Nothing is trusted on read: ``open`` checks the size and CRC of
   ``state.bin`` against ``meta.json`` before handing out the file, and
   ``latest_valid`` (what a backup sends) skips (WARN ``failed to open
   snapshot``) a damaged newest snapshot in favour of an older one. A node
   starting up uses ``open_newest`` instead, which never falls back: by
   invariant 1 a finished snapshot that fails its checks was damaged on
   disk, and starting from an older one (whose log may be compacted away) or
   from none would forget what it held (``StorageCorruptError``).
3. After each new snapshot, all but the newest ``retain`` are reaped (INFO
   ``reaping snapshot``). A reader that already opened a reaped snapshot keeps
   reading it: POSIX keeps unlinked files alive while open.
4. Data is streamed both ways in bounded chunks; the whole state is never held
   in memory here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import zlib
from typing import BinaryIO

from ..raft.configuration import Configuration
from ..raft.messages import SnapshotMeta
from ._files import LogFn, fsync_dir, noop_log
from .errors import StorageCorruptError

TMP_SUFFIX = ".tmp"
META_FILE = "meta.json"
STATE_FILE = "state.bin"
FORMAT_VERSION = 1
_CHUNK = 1024 * 1024
_ID = re.compile(r"(\d+)-(\d+)-(\d+)")


class SnapshotCorruptError(Exception):
    """A snapshot's metadata or data failed validation."""


def _sort_key(meta: SnapshotMeta) -> tuple:
    return (meta.term, meta.index, meta.id)


def _id_key(name: str) -> tuple[int, int, int] | None:
    """(term, index, unix ms) from a snapshot id: the order ``_sort_key``
    gives, known without reading a (possibly damaged) ``meta.json``."""
    m = _ID.fullmatch(name)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _checksum(f: BinaryIO) -> tuple[int, int]:
    """(crc32, size) of the rest of ``f``, read in bounded chunks."""
    crc = 0
    size = 0
    while chunk := f.read(_CHUNK):
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    return crc, size


class SnapshotWriter:
    """Streams one snapshot into ``<id>.tmp``; ``close`` publishes it."""

    def __init__(self, store: "SnapshotStore", meta: SnapshotMeta, snapshot_id: str):
        self._store = store
        self._meta = meta
        self.id = snapshot_id
        self.path = os.path.join(store.dir, snapshot_id + TMP_SUFFIX)
        os.mkdir(self.path)
        self._file = open(os.path.join(self.path, STATE_FILE), "wb")
        self._crc = 0
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError("snapshot writer is closed")
        self._file.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self.size += len(data)
        return len(data)

    def close(self) -> SnapshotMeta:
        if self._done:
            raise ValueError("snapshot writer is closed")
        self._done = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            meta = self._meta
            doc = {
                "version": FORMAT_VERSION,
                "id": self.id,
                "index": meta.index,
                "term": meta.term,
                "configuration": json.loads(meta.configuration.encode()),
                "configuration_index": meta.configuration_index,
                "size": self.size,
                "crc": self._crc,
            }
            with open(os.path.join(self.path, META_FILE), "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self.path)
            final = os.path.join(self._store.dir, self.id)
            os.rename(self.path, final)
            fsync_dir(self._store.dir)
        except BaseException:
            self._discard()
            raise
        result = SnapshotMeta(meta.index, meta.term, meta.configuration,
                              meta.configuration_index, self.id, self.size)
        self._store._reap()
        return result

    def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        self._discard()

    def _discard(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "SnapshotWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.cancel()
        elif not self._done:
            self.close()


class SnapshotStore:
    """Directory of snapshots; see the module docstring."""

    def __init__(self, dir: str, retain: int = 2, log: LogFn | None = None,
                 remove_leftovers: bool = True):
        """``remove_leftovers=False`` leaves the ``.tmp`` directories of
        interrupted writers until ``remove_leftovers()`` is called: a volume
        checks all its stores for corruption before it changes any file."""
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.dir = dir
        self.retain = retain
        self._log = log or noop_log
        os.makedirs(dir, exist_ok=True)
        if remove_leftovers:
            self.remove_leftovers()

    def remove_leftovers(self) -> None:
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(TMP_SUFFIX):
                self._log("WARN", "found temporary snapshot", [("name", name)])
                shutil.rmtree(os.path.join(self.dir, name), ignore_errors=True)

    def create(self, meta: SnapshotMeta) -> SnapshotWriter:
        ms = int(time.time() * 1000)
        while True:
            snapshot_id = "%d-%d-%d" % (meta.term, meta.index, ms)
            base = os.path.join(self.dir, snapshot_id)
            if not os.path.exists(base) and not os.path.exists(base + TMP_SUFFIX):
                break
            ms += 1  # two snapshots of the same point within a millisecond
        writer = SnapshotWriter(self, meta, snapshot_id)
        self._log("INFO", "creating new snapshot", [("path", writer.path)])
        return writer

    def list(self) -> list[SnapshotMeta]:
        """Complete snapshots with readable metadata, newest first."""
        metas = []
        for name in os.listdir(self.dir):
            if name.endswith(TMP_SUFFIX) or not os.path.isdir(os.path.join(self.dir, name)):
                continue
            try:
                metas.append(self._read_meta(name)[0])
            except (OSError, SnapshotCorruptError) as exc:
                self._log("WARN", "failed to read metadata", [("name", name), ("error", str(exc))])
        metas.sort(key=_sort_key, reverse=True)
        return metas

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        """Open a snapshot for reading after verifying its size and CRC."""
        if not snapshot_id or os.sep in snapshot_id or snapshot_id.startswith("."):
            raise SnapshotCorruptError("invalid snapshot id %r" % snapshot_id)
        meta, stored_crc = self._read_meta(snapshot_id)
        f = open(os.path.join(self.dir, snapshot_id, STATE_FILE), "rb")
        try:
            crc, size = _checksum(f)
            if size != meta.size:
                raise SnapshotCorruptError("snapshot %s: size %d, meta.json says %d"
                                           % (snapshot_id, size, meta.size))
            if crc != stored_crc:
                self._log("ERROR", "CRC checksum failed",
                          [("stored", stored_crc), ("computed", crc)])
                raise SnapshotCorruptError("snapshot %s: CRC checksum failed (stored %d, computed %d)"
                                           % (snapshot_id, stored_crc, crc))
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return meta, f

    def open_newest(self) -> tuple[SnapshotMeta, BinaryIO] | None:
        """The newest finished snapshot, verified and opened for reading, or
        None when there is none. A damaged one raises StorageCorruptError
        (see invariant 2) and logs nothing: the caller refuses to start and
        says so once."""
        newest: tuple[tuple[int, int, int], str] | None = None
        for name in os.listdir(self.dir):
            key = _id_key(name)
            if key is not None and (newest is None or key > newest[0]) \
                    and os.path.isdir(os.path.join(self.dir, name)):
                newest = (key, name)
        if newest is None:
            return None
        name = newest[1]
        try:
            meta, stored_crc = self._read_meta(name)
        except (OSError, SnapshotCorruptError) as exc:
            raise StorageCorruptError(os.path.join(self.dir, name, META_FILE), 0,
                                      f"the newest snapshot's metadata is unreadable: {exc}") from None
        path = os.path.join(self.dir, name, STATE_FILE)
        try:
            f = open(path, "rb")  # noqa: SIM115 -- handed to the caller, open
        except OSError as exc:
            raise StorageCorruptError(path, 0, f"the newest snapshot's data cannot be opened: "
                                               f"{exc.strerror}") from None
        try:
            crc, size = _checksum(f)
            if size != meta.size:
                raise StorageCorruptError(path, min(size, meta.size), f"the newest snapshot's data is "
                                          f"{size} bytes, {META_FILE} says {meta.size}")
            if crc != stored_crc:
                raise StorageCorruptError(path, 0, f"the newest snapshot's CRC checksum failed over the "
                                                   f"whole file (stored {stored_crc}, computed {crc})")
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return meta, f

    def latest_valid(self) -> tuple[SnapshotMeta, BinaryIO] | None:
        """The newest snapshot that opens cleanly, skipping damaged ones."""
        for meta in self.list():
            try:
                return self.open(meta.id)
            except (OSError, SnapshotCorruptError) as exc:
                self._log("WARN", "failed to open snapshot", [("id", meta.id), ("error", str(exc))])
        return None

    def crc_of(self, snapshot_id: str) -> int:
        """The CRC32 of a snapshot's state as recorded in its metadata."""
        return self._read_meta(snapshot_id)[1]

    def delete(self, snapshot_id: str) -> None:
        shutil.rmtree(os.path.join(self.dir, snapshot_id), ignore_errors=True)

    def _read_meta(self, name: str) -> tuple[SnapshotMeta, int]:
        path = os.path.join(self.dir, name, META_FILE)
        with open(path, "rb") as f:
            raw = f.read(16 * 1024 * 1024)
        try:
            doc = json.loads(raw)
            if doc.get("version") != FORMAT_VERSION:
                raise SnapshotCorruptError("snapshot version not supported: %r" % doc.get("version"))
            conf = doc["configuration"]
            configuration = Configuration.decode(conf.encode() if isinstance(conf, str)
                                                 else json.dumps(conf).encode())
            meta = SnapshotMeta(int(doc["index"]), int(doc["term"]), configuration,
                                int(doc["configuration_index"]), name, int(doc["size"]))
            crc = int(doc["crc"])
        except SnapshotCorruptError:
            raise
        except Exception as exc:  # any malformed JSON shape
            raise SnapshotCorruptError("bad metadata in %s: %s" % (path, exc)) from None
        return meta, crc

    def _reap(self) -> None:
        for meta in self.list()[self.retain:]:
            path = os.path.join(self.dir, meta.id)
            self._log("INFO", "reaping snapshot", [("path", path)])
            shutil.rmtree(path, ignore_errors=True)
