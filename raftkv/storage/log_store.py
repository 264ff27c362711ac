"""The Raft log on disk: a segmented, append-only, checksummed file log.

Theory of operation
-------------------
The log lives in one directory as a run of *segment* files, each named by the
index of its first record (``00000000000000000001.seg``). A record is::

    length (u32 big-endian) | crc32(payload) (u32 big-endian) | payload

where ``payload`` is msgpack ``[index, term, type, data]``. Segments hold
consecutive indexes and follow each other without gaps; only the last segment
("active") is ever appended to. :mod:`.segments` holds the format's pieces:
the record header, the check of every record a segment holds, and an open
segment's record offsets.

Invariants this module keeps:

1. Visible entries are exactly ``first_index() .. last_index()``, contiguous.
   ``first_index() == last_index() == 0`` means the store is empty.
2. For every segment we keep, in memory, the byte offset of every record, so
   ``get`` is one ``pread`` and ``truncate_from`` is one ``ftruncate``.
3. ``append`` writes a whole batch with one ``pwrite`` into the page cache and
   does not fsync; ``sync`` makes everything appended so far durable with one
   ``fdatasync`` per dirty segment (normally one: the group commit).
4. ``truncate_from``, ``compact_through`` and ``reset`` are durable when they
   return: they fsync the files they shorten and the directory they unlink in.
5. Compaction deletes whole segment files once every entry in them is
   compacted, so disk space comes back. A partly compacted segment keeps its
   bytes; the new first index is stored in the small fsync'd ``first_index``
   file so a restart does not resurrect compacted entries. A compaction that
   reaches into the active segment seals it, so the next append starts a new
   segment and the next compaction can delete the old one whole.
6. Opening never trusts the disk: each record's length, checksum, encoding and
   index are verified, and the segments must follow each other without gaps.
   A crash can only tear what was never synced: the end of the last segment.
   So a bad record there with nothing intact after it is a torn tail, cut off
   with a WARN. Any other damage (a bad record followed by an intact one, a
   bad record or an empty file in an earlier segment, a record whose checksum
   holds but whose contents do not, a gap between segments, or a log ending
   below the index the caller knows was durable) is corruption: opening
   raises :class:`~raftkv.storage.errors.StorageCorruptError` naming the file
   and offset, and changes nothing on disk.
7. A new segment is created only once the previous one is durable, so the
   disk never holds a later segment without all of the earlier ones.

Reads and writes are guarded by one lock so the runtime may call ``sync`` from
a worker thread while the event loop reads; ``sync`` itself runs its fsyncs on
duplicated descriptors outside the lock so readers are not stalled by the disk.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from bisect import bisect_right
from collections.abc import Sequence

import msgpack

from ..raft.messages import Entry
from ._files import LogFn, fsync_dir, noop_log
from .errors import StorageCorruptError
from .segments import (
    _HEADER,
    SEGMENT_SUFFIX,
    _decode_payload,
    _next_intact_record,
    _pwrite_all,
    _scan,
    _Segment,
    _segment_name,
)

FIRST_INDEX_FILE = "first_index"
DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
DEFAULT_CACHE_ENTRIES = 4096

_FLOOR = struct.Struct(">QI")
_fdatasync = getattr(os, "fdatasync", os.fsync)


class LogCorruptError(StorageCorruptError):
    """A record read back from a segment failed its checksum or decoding."""


class LogStore:
    """Segmented on-disk Raft log. See the module docstring for the rules."""

    def __init__(self, path_dir: str, log: LogFn | None = None, *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE,
                 cache_entries: int = DEFAULT_CACHE_ENTRIES, durable_through: int = 0):
        """``durable_through``: an index the caller knows this log made
        durable and nothing else (no snapshot) holds; a log that opens
        ending below it lost entries and is refused as corrupt."""
        self.path = path_dir
        self._log = log or noop_log
        self._segment_size = segment_size
        self._cache_cap = max(0, cache_entries)
        self._lock = threading.RLock()
        self._packer = msgpack.Packer(use_bin_type=True)
        self._segments: list[_Segment] = []
        self._bases: list[int] = []  # parallel to _segments, for bisect
        self._first = 0
        self._last = 0
        self._floor = 0  # persisted lower bound on visible indexes
        self._seal_active = False
        self._dirty: set[_Segment] = set()
        self._dir_dirty = False
        self._cache: list[Entry] = []
        self._cache_first = 0
        self._closed = False
        os.makedirs(path_dir, exist_ok=True)
        self._recover(durable_through)

    # ------------------------------------------------------------------ queries

    def first_index(self) -> int:
        return self._first

    def last_index(self) -> int:
        return self._last

    def get(self, index: int) -> Entry | None:
        with self._lock:
            if not self._last or index < self._first or index > self._last:
                return None
            if self._cache and index >= self._cache_first:
                return self._cache[index - self._cache_first]
            return self._read(index, index)[0]

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo..hi inclusive, clamped to what the store holds."""
        with self._lock:
            if not self._last:
                return []
            lo = max(lo, self._first)
            hi = min(hi, self._last)
            if lo > hi:
                return []
            if self._cache and lo >= self._cache_first:
                return self._cache[lo - self._cache_first:hi - self._cache_first + 1]
            return self._read(lo, hi)

    # ------------------------------------------------------------------ writes

    def append(self, entries: Sequence[Entry]) -> None:
        """Write entries after the last one (buffered; call ``sync`` to make
        them durable). An empty store accepts any start index, since after a
        snapshot install the log restarts at snapshot index + 1."""
        if not entries:
            return
        with self._lock:
            self._check_open()
            start = entries[0].index
            if self._last:
                if start != self._last + 1:
                    raise ValueError("append at index %d, expected %d" % (start, self._last + 1))
            elif start < 1:
                raise ValueError("log indexes start at 1, got %d" % start)
            for i, e in enumerate(entries):
                if e.index != start + i:
                    raise ValueError("entries are not contiguous at index %d" % e.index)
            if not self._last and start < self._floor:
                # A restart must not hide these under an older, higher floor.
                self._write_floor(start)
            seg = self._active_segment(start)
            pack = self._packer.pack
            crc32 = zlib.crc32
            header = _HEADER.pack
            buf = bytearray()
            offsets = []
            base_off = seg.size
            stored = []
            for e in entries:
                data = e.data
                if type(data) is not bytes:
                    data = bytes(data)
                    e = Entry(e.index, e.term, e.type, data)
                payload = pack([e.index, e.term, int(e.type), data])
                offsets.append(base_off + len(buf))
                buf += header(len(payload), crc32(payload))
                buf += payload
                stored.append(e)
            try:
                _pwrite_all(seg.fd, buf, base_off)
            except OSError:
                # Leave no half batch behind to confuse the next append.
                try:
                    os.ftruncate(seg.fd, base_off)
                except OSError:
                    pass
                if not seg.offsets:
                    self._segments.pop()
                    self._bases.pop()
                    self._unlink_segment(seg)
                raise
            seg.offsets.extend(offsets)
            seg.size += len(buf)
            self._dirty.add(seg)
            if not self._last:
                self._first = start
            self._last = entries[-1].index
            self._cache_extend(stored)

    def sync(self) -> None:
        """Make every append so far durable (one fdatasync per dirty segment)."""
        with self._lock:
            self._check_open()
            fds = [os.dup(seg.fd) for seg in self._dirty]
            self._dirty.clear()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for fd in fds:
                _fdatasync(fd)
            if dir_dirty:
                fsync_dir(self.path)
        except OSError:
            # After a failed fsync the kernel may have dropped the dirty pages;
            # nothing written since the last good sync can be trusted.
            with self._lock:
                self._dir_dirty = self._dir_dirty or dir_dirty
            raise
        finally:
            for fd in fds:
                os.close(fd)

    def truncate_from(self, index: int) -> None:
        """Delete entries >= index. Durable on return."""
        with self._lock:
            self._check_open()
            if not self._last or index > self._last:
                return
            if index <= self._first:
                self._drop_all_segments()
                return
            # Unlink from the newest backwards so a crash leaves a gapless prefix.
            unlinked = False
            while self._segments and self._segments[-1].base >= index:
                self._unlink_segment(self._segments.pop())
                self._bases.pop()
                unlinked = True
            if unlinked:
                fsync_dir(self.path)
            seg = self._segments[-1]
            if index <= seg.last:
                cut = seg.offsets[index - seg.base]
                os.ftruncate(seg.fd, cut)
                os.fsync(seg.fd)
                del seg.offsets[index - seg.base:]
                seg.size = cut
            self._last = index - 1
            if self._cache:
                if index <= self._cache_first:
                    self._cache = []
                else:
                    del self._cache[index - self._cache_first:]

    def compact_through(self, index: int) -> None:
        """Delete entries <= index, returning whole segment files to the disk.
        Durable on return."""
        with self._lock:
            self._check_open()
            if not self._last or index < self._first:
                return
            # The floor goes first: a crash before the unlinks leaves files that
            # the next open recognises as compacted and removes.
            self._write_floor(index + 1)
            if index >= self._last:
                self._drop_all_segments()
                return
            unlinked = False
            while self._segments and self._segments[0].last <= index:
                self._unlink_segment(self._segments.pop(0))
                self._bases.pop(0)
                unlinked = True
            if unlinked:
                fsync_dir(self.path)
            self._first = index + 1
            if self._segments[-1].base <= index:
                self._seal_active = True
            if self._cache:
                if index + 1 > self._cache_first:
                    del self._cache[:index + 1 - self._cache_first]
                    self._cache_first = index + 1

    def reset(self) -> None:
        """Delete every entry and the compaction floor."""
        with self._lock:
            self._check_open()
            self._drop_all_segments()
            self._floor = 0
            try:
                os.unlink(os.path.join(self.path, FIRST_INDEX_FILE))
            except FileNotFoundError:
                pass
            fsync_dir(self.path)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self.sync()
            finally:
                for seg in self._segments:
                    os.close(seg.fd)
                self._segments = []
                self._bases = []
                self._cache = []
                self._closed = True

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("log store is closed")

    def _active_segment(self, start: int) -> _Segment:
        if self._segments and not self._seal_active and self._segments[-1].size < self._segment_size:
            return self._segments[-1]
        if self._segments:
            # Invariant 7. Unconditionally: a sync running on another thread
            # may have taken the old segment off the dirty set before its
            # fdatasync is done. Once per segment, so cheap.
            _fdatasync(self._segments[-1].fd)
            fsync_dir(self.path)
            self._dirty.discard(self._segments[-1])
            self._dir_dirty = False
        path = os.path.join(self.path, _segment_name(start))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        seg = _Segment(start, path, fd, [], 0)
        self._segments.append(seg)
        self._bases.append(start)
        self._seal_active = False
        self._dir_dirty = True  # the new name must be durable with its data
        return seg

    def _unlink_segment(self, seg: _Segment) -> None:
        self._dirty.discard(seg)
        os.close(seg.fd)
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass

    def _drop_all_segments(self) -> None:
        while self._segments:
            self._unlink_segment(self._segments.pop())
        self._bases = []
        fsync_dir(self.path)
        self._dir_dirty = False
        self._first = self._last = 0
        self._seal_active = False
        self._cache = []

    def _write_floor(self, index: int) -> None:
        body = struct.pack(">Q", index)
        data = _FLOOR.pack(index, zlib.crc32(body))
        final = os.path.join(self.path, FIRST_INDEX_FILE)
        tmp = final + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(self.path)
        self._floor = index

    def _read_floor(self) -> int:
        path = os.path.join(self.path, FIRST_INDEX_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read(_FLOOR.size + 1)
        except FileNotFoundError:
            return 0
        if len(data) == _FLOOR.size:
            index, crc = _FLOOR.unpack(data)
            if zlib.crc32(struct.pack(">Q", index)) == crc:
                return index
        self._log("WARN", "log store: ignoring corrupt first index file",
                  [("path", path), ("size", len(data))])
        return 0

    def _cache_extend(self, entries: list[Entry]) -> None:
        if not self._cache_cap:
            return
        if not self._cache:
            self._cache_first = entries[0].index
        self._cache.extend(entries)
        if len(self._cache) > 2 * self._cache_cap:
            drop = len(self._cache) - self._cache_cap
            del self._cache[:drop]
            self._cache_first += drop

    def _read(self, lo: int, hi: int) -> list[Entry]:
        """Read lo..hi (all present) from the segment files."""
        out: list[Entry] = []
        i = bisect_right(self._bases, lo) - 1
        index = lo
        while index <= hi:
            seg = self._segments[i]
            last = min(hi, seg.last)
            r0 = index - seg.base
            r1 = last - seg.base
            start = seg.offsets[r0]
            end = seg.record_end(r1)
            blob = os.pread(seg.fd, end - start, start)
            if len(blob) != end - start:
                raise LogCorruptError(seg.path, start, "short read")
            view = memoryview(blob)
            for r in range(r0, r1 + 1):
                pos = seg.offsets[r] - start
                length, crc = _HEADER.unpack_from(view, pos)
                payload = view[pos + _HEADER.size:pos + _HEADER.size + length]
                if zlib.crc32(payload) != crc:
                    raise LogCorruptError(seg.path, seg.offsets[r], "checksum mismatch")
                try:
                    out.append(_decode_payload(payload))
                except ValueError as exc:
                    raise LogCorruptError(seg.path, seg.offsets[r], str(exc)) from None
            index = last + 1
            i += 1
        return out

    def _recover(self, durable_through: int) -> None:
        """Check every segment, then repair: refuse corruption before any
        file is touched (invariant 6)."""
        self._floor = self._read_floor()
        found: list[tuple[int, str]] = []
        for name in os.listdir(self.path):
            if not name.endswith(SEGMENT_SUFFIX):
                continue
            stem = name[:-len(SEGMENT_SUFFIX)]
            if not stem.isdigit() or int(stem) < 1:
                self._log("WARN", "log store: ignoring unexpected file", [("name", name)])
                continue
            found.append((int(stem), name))
        found.sort()
        # What an interrupted compaction left behind: whole segments below the
        # floor, whose entries a snapshot holds. Their contents do not matter.
        live = 0
        while live + 1 < len(found) and found[live + 1][0] <= self._floor:
            live += 1
        stale = found[:live]

        opened: list[_Segment] = []
        torn: tuple[int, str] | None = None  # (file size, reason) of the last segment
        try:
            expected: int | None = None
            for pos, (base, name) in enumerate(found[live:], start=live):
                path = os.path.join(self.path, name)
                is_last = pos == len(found) - 1
                if expected is not None and base != expected:
                    missing = f": entries {expected}..{base - 1} are missing" if base > expected else ""
                    raise StorageCorruptError(path, 0, f"segment starts at index {base}, but the one "
                                                       f"before it ends at index {expected - 1}{missing}")
                fd = os.open(path, os.O_RDWR)
                seg = _Segment(base, path, fd, [], 0)
                opened.append(seg)
                size = os.fstat(fd).st_size
                data = os.pread(fd, size, 0) if size else b""
                seg.offsets, seg.size, reason, intact = _scan(data, base)
                if reason is not None:
                    if intact:
                        raise StorageCorruptError(path, seg.size, reason)
                    if not is_last:
                        raise StorageCorruptError(path, seg.size, f"{reason}, in a segment that later "
                                                                  "segments follow")
                    follower = _next_intact_record(data, seg.size + 1)
                    if follower is not None:
                        raise StorageCorruptError(path, seg.size, f"{reason}, and an intact record follows "
                                                                  f"at offset {follower}")
                    torn = (size, reason)
                elif not seg.offsets and not is_last:
                    raise StorageCorruptError(path, 0, "empty segment, and later segments follow")
                del data
                expected = base + len(seg.offsets)
            kept = [seg for seg in opened if seg.offsets and seg.last >= self._floor]
            last = kept[-1].last if kept else 0
            if last < durable_through:
                where = opened[-1] if opened else None
                damaged = f" (the last record is damaged: {torn[1]})" if torn else ""
                raise StorageCorruptError(
                    where.path if where else self.path, where.size if where else 0,
                    f"the log ends at index {last}, but index {durable_through} was durable here "
                    f"and no snapshot holds it{damaged}")
        except BaseException:
            for seg in opened:
                os.close(seg.fd)
            raise

        changed = False
        try:
            os.unlink(os.path.join(self.path, FIRST_INDEX_FILE + ".tmp"))
        except FileNotFoundError:
            pass
        if torn is not None:
            seg = opened[-1]
            os.ftruncate(seg.fd, seg.size)
            os.fsync(seg.fd)
            self._log("WARN", "log store: truncated torn tail",
                      [("segment", seg.name), ("offset", seg.size), ("dropped-bytes", torn[0] - seg.size),
                       ("error", torn[1])])
        for _base, name in stale:
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
            changed = True
        for seg in opened:
            if not (seg.offsets and seg.last >= self._floor):
                self._unlink_segment(seg)
                changed = True
        if changed:
            fsync_dir(self.path)
        self._segments = kept
        self._bases = [seg.base for seg in kept]
        if kept:
            self._first = max(self._floor, kept[0].base)
            self._last = kept[-1].last
