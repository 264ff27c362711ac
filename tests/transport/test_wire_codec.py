"""The wire codec: every message survives a round trip, and any bytes at all
either decode or raise CodecError -- never another exception."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from raftkv.transport import codec
from raftkv.transport.codec import (
    TYPE_CODES,
    AuthChallenge,
    AuthProof,
    CodecError,
    FrameDecoder,
    Hello,
    SnapshotAck,
    SnapshotChunk,
    decode_body,
    encode,
    encode_body,
    read_frame,
)

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
texts = st.text(max_size=20)
servers = st.builds(Server, texts, texts, st.sampled_from(Suffrage))
configurations = st.builds(Configuration, st.lists(servers, max_size=5).map(tuple))
entries = st.builds(Entry, ints, ints, st.sampled_from(EntryType), st.binary(max_size=64))
metas = st.builds(SnapshotMeta, ints, ints, configurations, ints, texts, ints)

MESSAGES = {
    RequestVote: st.builds(RequestVote, ints, texts, texts, ints, ints, st.booleans(), st.booleans()),
    RequestVoteResponse: st.builds(RequestVoteResponse, ints, st.booleans(), st.booleans()),
    AppendEntries: st.builds(AppendEntries, ints, texts, texts, ints, ints,
                             st.lists(entries, max_size=8).map(tuple), ints, st.booleans(), ints),
    AppendEntriesResponse: st.builds(AppendEntriesResponse, ints, st.booleans(), ints, ints, ints,
                                     st.booleans(), ints),
    InstallSnapshot: st.builds(InstallSnapshot, ints, texts, texts, metas, st.none()),
    InstallSnapshotResponse: st.builds(InstallSnapshotResponse, ints, st.booleans(), ints),
    TimeoutNow: st.builds(TimeoutNow, ints, texts),
    ReadIndexRequest: st.builds(ReadIndexRequest, ints, ints, st.booleans()),
    ReadIndexResponse: st.builds(ReadIndexResponse, ints, ints, ints, st.booleans(), ints),
    Hello: st.builds(Hello, texts, ints, texts, texts),
    SnapshotChunk: st.builds(SnapshotChunk, st.binary(max_size=256), st.booleans()),
    SnapshotAck: st.builds(SnapshotAck, st.booleans(), texts),
    AuthChallenge: st.builds(AuthChallenge, st.binary(max_size=64)),
    AuthProof: st.builds(AuthProof, st.binary(max_size=64), st.binary(max_size=64)),
}
any_message = st.one_of(*MESSAGES.values())


def test_every_wire_class_has_a_strategy():
    assert set(MESSAGES) == set(TYPE_CODES)


@pytest.mark.parametrize("kind", list(MESSAGES), ids=lambda k: k.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(kind, data):
    message = data.draw(MESSAGES[kind])
    frame = encode(message)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert decode_body(frame[4:]) == message
    assert FrameDecoder().feed(frame) == [message]


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(any_message, max_size=12), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_split_anywhere_decodes_in_order(messages, cuts):
    stream = b"".join(encode(m) for m in messages)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = FrameDecoder()
    out = []
    for a, b in zip(points, points[1:]):
        out.extend(decoder.feed(stream[a:b]))
    decoder.eof()
    assert out == messages
    assert decoder.buffered == 0


def test_wire_layout_is_type_code_then_fields_in_order():
    e = Entry(7, 3, EntryType.CONFIGURATION, b"cfg")
    m = AppendEntries(3, "n1", "127.0.0.1:9000", 6, 2, (e,), 5, False, 9)
    assert msgpack.unpackb(encode_body(m), raw=False) == [
        3, 3, "n1", "127.0.0.1:9000", 6, 2, [[7, 3, 2, b"cfg"]], 5, False, 9]
    meta = SnapshotMeta(10, 2, Configuration((Server("n1", "a:1"), Server("n2", "a:2", Suffrage.NONVOTER))), 4, "2-10-1", 344)
    body = msgpack.unpackb(encode_body(InstallSnapshot(2, "n1", "a:1", meta)), raw=False)
    assert body == [5, 2, "n1", "a:1", [10, 2, [["n1", "a:1", "Voter", ""], ["n2", "a:2", "Nonvoter", ""]], 4,
                                        "2-10-1", 344], None]
    assert msgpack.unpackb(encode_body(AppendEntriesResponse(3, True, 7, 6, 7, volume="5f1c")), raw=False) == [
        4, 3, True, 7, 6, 7, False, 0, "5f1c"]
    assert msgpack.unpackb(encode_body(codec.hello("n2", "127.0.0.1:9001")), raw=False) == [
        64, "raftkv", 2, "n2", "127.0.0.1:9001"]


def test_install_snapshot_data_never_travels():
    meta = SnapshotMeta(1, 1)
    sent = InstallSnapshot(1, "n1", "a:1", meta, data=object())
    assert decode_body(encode_body(sent)) == dataclasses.replace(sent, data=None)


def test_decoded_entry_type_is_the_enum():
    m = decode_body(encode_body(AppendEntries(1, "n1", "a", 0, 0, (Entry(1, 1, EntryType.NOOP),), 0)))
    assert m.entries[0].type is EntryType.NOOP


def test_encode_rejects_non_messages_with_codec_error():
    with pytest.raises(CodecError, match="not a wire message"):
        encode({"term": 1})
    with pytest.raises(CodecError):
        encode(RequestVoteResponse(2**70, True))


# --- malformed input ---------------------------------------------------------

def body(*items) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


@pytest.mark.parametrize("raw, fragment", [
    (b"", "malformed msgpack"),
    (b"\xc1", "malformed msgpack"),
    (body(1, 2) + b"\x00", "malformed msgpack"),       # trailing bytes
    (msgpack.packb({}), "expected non-empty list"),
    (msgpack.packb({"a": 1}), r"1 exceeds max_map_len\(0\)"),      # no maps on this wire
    (msgpack.packb([]), "expected non-empty list"),
    (msgpack.packb(5), "expected non-empty list"),
    (body(99, 1), "unknown message type code 99"),
    (body("1", 1), "unknown message type code '1'"),
    (body(True, 1), "unknown message type code True"),
    (body(2, 1, True), "RequestVoteResponse: expected 3 fields, got 2"),
    (body(2, 1, True, False, 0), "RequestVoteResponse: expected 3 fields, got 4"),
    (body(2, True, True, False), "RequestVoteResponse.term: expected int"),
    (body(2, 1, 1, False), "RequestVoteResponse.granted: expected bool"),
    (body(7, 1, b"n1"), "TimeoutNow.leader_id: expected str"),
    (body(3, 1, "n1", "a", 0, 0, [[1, 1, 0, "text"]], 0, False, 0), r"AppendEntries.entries\[0\].data: expected bytes"),
    (body(3, 1, "n1", "a", 0, 0, [[1, 1, 0, b""], [2, 1, 9, b""]], 0, False, 0), r"AppendEntries.entries\[1\].type: expected entry type"),
    (body(3, 1, "n1", "a", 0, 0, [[1, 1, 0]], 0, False, 0), r"AppendEntries.entries\[0\]: expected 4 fields, got 3"),
    (body(3, 1, "n1", "a", 0, 0, {}, 0, False, 0), "AppendEntries.entries: expected list"),
    (body(5, 1, "n1", "a", [1, 1, [["n1", "a", "Staging", ""]], 0, "", 0], None),
     r"InstallSnapshot.meta.configuration\[0\].suffrage: expected suffrage"),
    (body(5, 1, "n1", "a", [1, 1, [], 0, "", 0], b"data"), "InstallSnapshot.data: expected nil"),
    (body(65, "x", True), "SnapshotChunk.data: expected bytes"),
    (b"\x92\x02\xa2\xff\xfe", "malformed msgpack"),   # invalid UTF-8 in a str
    (b"\x92\xd4\x01\x00\x01", r"exceeds max_ext_len\(0\)"),  # nor extension types
])
def test_malformed_bodies_raise_codec_error(raw, fragment):
    with pytest.raises(CodecError, match=fragment):
        decode_body(raw)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_codec_error(data):
    # anything but CodecError escaping fails the test
    with contextlib.suppress(CodecError):
        decode_body(data)
    decoder = FrameDecoder(max_frame=1 << 16)
    with contextlib.suppress(CodecError):
        decoder.feed(data)
        decoder.eof()


msgpack_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | texts | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(code=st.sampled_from(sorted(TYPE_CODES.values())), fields=st.lists(msgpack_values, max_size=10))
def test_structured_garbage_with_valid_type_codes_only_raises_codec_error(code, fields):
    with contextlib.suppress(CodecError):
        decode_body(msgpack.packb([code, *fields], use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(message=any_message, data=st.data())
def test_mutating_one_field_of_a_real_message_only_raises_codec_error(message, data):
    items = msgpack.unpackb(encode_body(message), raw=False)
    i = data.draw(st.integers(1, len(items) - 1))
    items[i] = data.draw(msgpack_values)
    try:
        decoded = decode_body(msgpack.packb(items, use_bin_type=True))
    except CodecError:
        return
    assert type(decoded) is type(message)


def test_truncated_frame_is_reported_at_eof():
    frame = encode(TimeoutNow(4, "n1"))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:-1]) == []
    assert decoder.buffered == len(frame) - 1
    with pytest.raises(CodecError, match="truncated frame"):
        decoder.eof()


def test_oversized_length_is_rejected_before_the_body_arrives():
    decoder = FrameDecoder(max_frame=1024)
    with pytest.raises(CodecError, match="exceeds the limit of 1024"):
        decoder.feed(struct.pack(">I", 1025))
    assert FrameDecoder(max_frame=1024).feed(encode(SnapshotChunk(b"x" * 1000, False)))  # at the limit is fine


def test_default_limit_is_8_mib():
    decoder = FrameDecoder()
    with pytest.raises(CodecError, match="exceeds the limit of 8388608"):
        decoder.feed(struct.pack(">I", 8 * 1024 * 1024 + 1))


def test_decoder_stays_broken_after_an_error():
    decoder = FrameDecoder()
    with pytest.raises(CodecError):
        decoder.feed(struct.pack(">I", 1) + b"\xc1")
    with pytest.raises(CodecError):
        decoder.feed(encode(TimeoutNow(1, "n1")))


def test_push_pop_delivers_good_frames_before_a_bad_one():
    good = TimeoutNow(1, "n1")
    decoder = FrameDecoder()
    decoder.push(encode(good) + struct.pack(">I", 1) + b"\xc1")
    assert decoder.pop() == good
    with pytest.raises(CodecError):
        decoder.pop()


def reader_with(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_read_frame():
    m1, m2 = TimeoutNow(1, "n1"), RequestVoteResponse(2, True)
    reader = reader_with(encode(m1) + encode(m2))
    assert await read_frame(reader) == m1
    assert await read_frame(reader) == m2
    assert await read_frame(reader) is None  # clean EOF at a frame boundary


@pytest.mark.parametrize("data, fragment", [
    (encode(TimeoutNow(1, "n1"))[:-2], "truncated frame"),
    (b"\x00\x00", "truncated frame"),
    (struct.pack(">I", 2000) + b"x" * 2000, "exceeds the limit of 1000"),
    (struct.pack(">I", 3) + b"abc", "malformed|expected"),
])
async def test_read_frame_errors(data, fragment):
    with pytest.raises(CodecError, match=fragment):
        await read_frame(reader_with(data), max_frame=1000)


# --- limits: what a body may make us build ------------------------------------

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_from_now() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return
    it; where that is not allowed the current RSS stands in for the peak."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss()


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return max(int(line.split()[1]) * 1024, rss())
    return rss()


def entries_claiming(n: int, padding: int = 0) -> bytes:
    """An AppendEntries body whose entries array header claims ``n`` entries."""
    head = b"\x9a" + msgpack.packb([3, 1, "n1", "a", 0, 0])[1:]  # ten items: AppendEntries' arity
    return head + b"\xdd" + struct.pack(">I", n) + b"\x90" * padding


def nested_empty_arrays(size: int) -> bytes:
    """An AppendEntries body of about ``size`` bytes whose entries are arrays
    of 1024 arrays of four empty arrays: within every per-array cap, yet
    ~40 Python objects per byte if built."""
    inner = b"\xdc" + struct.pack(">H", 1024) + (b"\x94" + b"\x90" * 4) * 1024
    count = max(1, min(1024, size // len(inner)))
    head = b"\x9a" + msgpack.packb([3, 1, "n1", "a", 0, 0])[1:]
    return head + b"\xdc" + struct.pack(">H", count) + inner * count + msgpack.packb(0) + b"\xc2\x00"


@pytest.mark.parametrize("padding", [0, 2 * codec.SMALL_BODY], ids=["small-body", "walked-body"])
def test_an_array_over_max_array_len_is_refused_before_it_is_built(padding):
    with pytest.raises(CodecError, match=r"refused msgpack body: 5000000 exceeds max_array_len\(1024\)"):
        decode_body(entries_claiming(5_000_000, padding))
    with pytest.raises(CodecError, match=r"1025 exceeds max_array_len\(1024\)"):
        decode_body(entries_claiming(1025, padding))


def test_max_array_len_covers_the_largest_batch_and_configuration():
    # RAFT_MAX_APPEND_ENTRIES goes up to 1024 (config/settings.py): a full batch of
    # the largest setting, over SMALL_BODY so the walk runs too
    batch = AppendEntries(2, "n1", "a:1", 0, 0, tuple(Entry(i, 2, data=b"v" * 200) for i in range(1, 1025)), 0)
    assert len(encode_body(batch)) > codec.SMALL_BODY
    assert decode_body(encode_body(batch)) == batch
    servers = tuple(Server(f"n{i}", f"node-{i:04d}.raft-cluster.example.internal:9000", Suffrage.VOTER, f"vol-{i:04d}")
                    for i in range(1024))
    snap = InstallSnapshot(2, "n1", "a:1", SnapshotMeta(5, 2, Configuration(servers), 5, "2-5-1", 100))
    assert len(encode_body(snap)) > codec.SMALL_BODY
    assert decode_body(encode_body(snap)) == snap


def test_text_and_binary_have_caps():
    long_id = "n" * (codec.MAX_STR_LEN + 1)
    with pytest.raises(CodecError, match=r"exceeds max_str_len\(16384\)"):
        decode_body(encode_body(TimeoutNow(1, long_id)))
    chunk = encode_body(SnapshotChunk(b"x" * 1001, False))
    with pytest.raises(CodecError, match=r"1001 exceeds max_bin_len\(1000\)"):
        decode_body(chunk, max_bin_len=1000)
    assert decode_body(chunk, max_bin_len=1001) == SnapshotChunk(b"x" * 1001, False)


def test_nested_arrays_beyond_max_objects_are_refused_without_building_them():
    body = nested_empty_arrays(1 << 20)
    with pytest.raises(CodecError, match=r"more than 8256 values in a body of \d+ bytes \(max_objects\(8256\)\)"):
        decode_body(body)
    # under SMALL_BODY the same shape is built (a few MB at most) and then
    # refused by its type
    with pytest.raises(CodecError, match=r"AppendEntries.entries\[0\]: expected 4 fields"):
        decode_body(nested_empty_arrays(codec.SMALL_BODY // 2))


def test_only_messages_that_can_be_large_may_have_a_large_body():
    big = codec.SMALL_BODY + 1
    for body_start in (b"\x93\x02", b"\xdd\x00\x4c", b"\x91\x40", b"\x80\x00"):
        decoder = FrameDecoder()
        with pytest.raises(CodecError, match="exceeds the limit of 65536 for anything but AppendEntries"):
            decoder.feed(struct.pack(">I", big) + body_start)  # refused after 6 bytes of 65537
    for kind in (AppendEntries, InstallSnapshot, SnapshotChunk):
        prefix = encode(next(m for m in (
            AppendEntries(1, "n1", "a", 0, 0, (), 0), InstallSnapshot(1, "n1", "a", SnapshotMeta(1, 1)),
            SnapshotChunk(b"", False)) if type(m) is kind))[4:6]
        assert FrameDecoder().feed(struct.pack(">I", big) + prefix) == []  # waits for the rest


def test_the_6mb_array_of_millions_costs_no_memory():
    # The frame that took a follower from 75 to 514 MB: a msgpack array that
    # claims five million elements, followed by six million one-byte empty
    # arrays. Built before the measurement starts.
    body = b"\xdd" + struct.pack(">I", 5_000_000) + b"\x90" * 6_000_000
    frame = struct.pack(">I", len(body)) + body
    nested = nested_empty_arrays(6_000_000)
    gc.collect()
    before = peak_rss_from_now()
    decoder = FrameDecoder()
    with pytest.raises(CodecError, match="exceeds the limit of 65536 for anything but AppendEntries"):
        for i in range(0, len(frame), 256 * 1024):  # as the socket delivers it
            decoder.push(frame[i:i + 256 * 1024])
            decoder.pop()
    with pytest.raises(CodecError, match=r"5000000 exceeds max_array_len\(1024\)"):
        decode_body(body)
    with pytest.raises(CodecError, match=r"max_objects\(8256\)"):
        decode_body(nested)
    peak = peak_rss() - before
    print(f"RSS peak decoding the 6 MB frames: +{peak / 1e6:.1f} MB (unlimited, this was ~440 MB)")
    assert peak < 4 * 1024 * 1024


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), code=st.sampled_from(sorted(TYPE_CODES.values())),
       fields=st.lists(msgpack_values, max_size=10))
def test_the_counting_walk_only_ever_raises_codec_error(data, code, fields):
    # the walk runs on bodies over SMALL_BODY; here on small ones directly
    for body in (data, msgpack.packb([code, *fields], use_bin_type=True)):
        with contextlib.suppress(CodecError):
            codec._count_values(body, len(body))


@settings(max_examples=100, deadline=None)
@given(message=any_message)
def test_every_real_message_passes_the_counting_walk(message):
    body = encode_body(message)
    codec._count_values(body, len(body))
