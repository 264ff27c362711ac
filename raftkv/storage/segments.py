"""One segment file of the Raft log (:mod:`.log_store`): the record format,
the check of every record a segment holds, and an open segment's index.

A record is ``length (u32 big-endian) | crc32(payload) (u32 big-endian) |
payload``, where ``payload`` is msgpack ``[index, term, type, data]``; a
segment is a run of records with consecutive indexes, named by the index of
its first (``00000000000000000001.seg``). :func:`_scan` validates a segment's
records and says where and why it stopped; :func:`_next_intact_record` looks
past a bad record for an intact one, which tells a torn tail (nothing intact
follows) from corruption. :class:`_Segment` is an open segment: its file
descriptor and the byte offset of every record.
"""

from __future__ import annotations

import os
import struct
import zlib

import msgpack

from ..raft.messages import Entry, EntryType

SEGMENT_SUFFIX = ".seg"
# A record larger than this can only be garbage: entries are bounded by the
# HTTP body limit far below it.
MAX_RECORD_SIZE = 256 * 1024 * 1024

_HEADER = struct.Struct(">II")
_ENTRY_TYPES = frozenset(int(t) for t in EntryType)
# Every payload is msgpack's fixarray of four, so a record can only start 8
# bytes before this byte: the search for intact records past a bad one jumps
# from one to the next instead of trying every offset.
_PAYLOAD_START = b"\x94"


def _segment_name(base: int) -> str:
    return "%020d%s" % (base, SEGMENT_SUFFIX)


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _decode_payload(payload) -> Entry:
    """Turn a record payload into an Entry, or raise ValueError."""
    try:
        rec = msgpack.unpackb(payload, raw=False, use_list=True)
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise ValueError("undecodable payload: %s" % exc) from None
    if not isinstance(rec, list) or len(rec) != 4:
        raise ValueError("payload is not [index, term, type, data]")
    index, term, typ, data = rec
    if (type(index) is not int or type(term) is not int or index < 1 or term < 0
            or typ not in _ENTRY_TYPES or not isinstance(data, bytes)):
        raise ValueError("payload fields have wrong types")
    return Entry(index, term, EntryType(typ), data)


def _scan(data, base: int) -> tuple[list[int], int, str | None, bool]:
    """Validate the records of one segment image.

    Returns (record offsets, end of the valid prefix, reason the scan stopped
    early or None, whether the record it stopped at had a matching checksum:
    a crash cannot write one of those, only the disk or a bug can)."""
    view = memoryview(data)
    size = len(view)
    offsets: list[int] = []
    pos = 0
    while pos < size:
        if size - pos < _HEADER.size:
            return offsets, pos, "short record header", False
        length, crc = _HEADER.unpack_from(view, pos)
        if length == 0 or length > MAX_RECORD_SIZE:
            return offsets, pos, "bad record length %d" % length, False
        end = pos + _HEADER.size + length
        if end > size:
            return offsets, pos, "short record", False
        payload = view[pos + _HEADER.size:end]
        if zlib.crc32(payload) != crc:
            return offsets, pos, "checksum mismatch", False
        try:
            entry = _decode_payload(payload)
        except ValueError as exc:
            return offsets, pos, str(exc), True
        if entry.index != base + len(offsets):
            return offsets, pos, f"unexpected index {entry.index}, expected {base + len(offsets)}", True
        offsets.append(pos)
        pos = end
    return offsets, pos, None, False


def _next_intact_record(data: bytes, start: int) -> int | None:
    """The offset of the first record at or after ``start`` whose length
    fits, whose checksum matches and whose payload decodes, or None."""
    view = memoryview(data)
    size = len(data)
    i = start + _HEADER.size
    while (i := data.find(_PAYLOAD_START, i)) >= 0:
        pos = i - _HEADER.size
        length, crc = _HEADER.unpack_from(view, pos)
        if 0 < length <= size - i and zlib.crc32(view[i:i + length]) == crc:
            try:
                _decode_payload(view[i:i + length])
            except ValueError:
                pass
            else:
                return pos
        i += 1
    return None


class _Segment:
    __slots__ = ("base", "name", "path", "fd", "offsets", "size")

    def __init__(self, base: int, path: str, fd: int, offsets: list[int], size: int):
        self.base = base
        self.name = os.path.basename(path)
        self.path = path
        self.fd = fd
        self.offsets = offsets
        self.size = size

    @property
    def last(self) -> int:
        return self.base + len(self.offsets) - 1

    def record_end(self, i: int) -> int:
        return self.offsets[i + 1] if i + 1 < len(self.offsets) else self.size
