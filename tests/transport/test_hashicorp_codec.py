"""The hashicorp/raft codec against frames recorded from a real hraftd (hashicorp/raft 1.1.2).

The fixtures were written by ``fixtures/record_hraftd.py``: hraftd node0 at
127.0.0.1:38247 leading term 2, replicating to a fake server n1 it was told to
join at 127.0.0.1:41705.
"""

from __future__ import annotations

import os

import msgpack
import pytest

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
from raftkv.transport.hashicorp_protocol import codec as hc
from raftkv.transport.codec import CodecError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
LEADER = "127.0.0.1:38247"
IDS = {LEADER: "node0", "127.0.0.1:41705": "n1"}


def fixture(name: str) -> bytes:
    with open(os.path.join(FIXTURES, f"hraftd_{name}.bin"), "rb") as f:
        return f.read()


def decode_one_request(raw: bytes):
    d = hc.StreamDecoder()
    d.push(raw)
    rpc_type, obj = d.next_request()
    assert d.next_request() is None and not d.mid_item
    return rpc_type, obj


def id_of(address: str) -> str:
    return IDS.get(address, address)


def test_heartbeat_is_header_term_and_leader_only():
    rpc_type, obj = decode_one_request(fixture("heartbeat"))
    assert rpc_type == hc.RPC_APPEND_ENTRIES
    assert hc.is_heartbeat(obj)
    msg = hc.decode_request(rpc_type, obj, id_of)
    assert msg == AppendEntries(2, "node0", LEADER, 0, 0, (), 0, heartbeat=True)


def test_append_entries_from_the_start_carries_configuration_noop_and_commands():
    rpc_type, obj = decode_one_request(fixture("append_entries_from_start"))
    msg = hc.decode_request(rpc_type, obj, id_of)
    assert not msg.heartbeat
    assert (msg.term, msg.leader_id, msg.prev_log_index, msg.prev_log_term, msg.leader_commit) == (2, "node0", 0, 0, 5)
    types = [e.type for e in msg.entries]
    assert types == [EntryType.CONFIGURATION, EntryType.NOOP, EntryType.COMMAND, EntryType.COMMAND,
                     EntryType.CONFIGURATION]
    assert Configuration.decode(msg.entries[0].data) == Configuration((Server("node0", LEADER, Suffrage.VOTER),))
    assert Configuration.decode(msg.entries[4].data) == Configuration((
        Server("node0", LEADER, Suffrage.VOTER), Server("n1", "127.0.0.1:41705", Suffrage.VOTER)))
    assert msg.entries[2] == Entry(3, 2, EntryType.COMMAND, b'{"op":"set","key":"a","value":"1"}')


@pytest.mark.parametrize("name", ["heartbeat", "append_entries_empty", "append_entries_from_start",
                                  "append_entries_command"])
def test_requests_reencode_to_the_exact_go_bytes(name):
    raw = fixture(name)
    rpc_type, obj = decode_one_request(raw)
    assert hc.encode_request(hc.decode_request(rpc_type, obj, id_of)) == raw


def test_empty_probe_sends_an_empty_array_and_heartbeat_nil():
    assert b"\xa7Entries\x90" in fixture("append_entries_empty")
    assert b"\xa7Entries\xc0" in fixture("heartbeat")


def test_go_keys_are_sorted_field_names_and_strings_are_legacy_raw():
    _, obj = decode_one_request(fixture("append_entries_command"))
    assert list(obj) == sorted(obj)
    assert list(obj[b"Entries"][0]) == [b"Data", b"Extensions", b"Index", b"Term", b"Type"]
    raw = fixture("append_entries_command")
    assert b"\xda\x00\x22{\"op\"" in raw  # a 34-byte []byte is raw16, not str8 or bin8
    assert b"\xd9" not in raw and b"\xc4" not in raw


def responses(name: str):
    d = hc.StreamDecoder()
    d.push(fixture(f"response_{name}"))
    return d.next_response()


def test_append_entries_response_from_go():
    error, obj = responses("append_entries")
    assert error == b""
    req = AppendEntries(0, "n1", "x:1", 0, 0, (), 0)
    assert hc.decode_response(req, error, obj) == AppendEntriesResponse(2, False, 7, 0, 0)
    assert hc.encode_response(AppendEntriesResponse(2, False, 7, 0)) == fixture("response_append_entries")


def test_append_entries_response_fills_what_the_core_matches_on():
    ok = {b"LastLog": 9, b"Success": True, b"Term": 3}
    entries = (Entry(8, 3), Entry(9, 3))
    req = AppendEntries(3, "n0", "a:1", 7, 3, entries, 6, read_seq=4)
    assert hc.decode_response(req, b"", ok) == AppendEntriesResponse(3, True, 9, 7, match_index=9, read_seq=4)
    hb = AppendEntries(3, "n0", "a:1", 0, 0, (), 6, heartbeat=True, read_seq=5)
    assert hc.decode_response(hb, b"", ok) == AppendEntriesResponse(3, True, 9, 0, heartbeat=True, read_seq=5)
    with pytest.raises(hc.RemoteError, match="boom"):
        hc.decode_response(req, b"boom", ok)


def test_request_vote_response_from_go():
    error, obj = responses("request_vote")
    req = RequestVote(0, "n1", "x:1", 0, 0)
    assert hc.decode_response(req, error, obj) == RequestVoteResponse(2, False)
    assert hc.encode_response(RequestVoteResponse(2, False)) == fixture("response_request_vote")


def test_install_snapshot_response_from_go():
    error, obj = responses("install_snapshot")
    req = InstallSnapshot(0, "n1", "x:1", SnapshotMeta(5, 1))
    assert hc.decode_response(req, error, obj) == InstallSnapshotResponse(2, False, 0)
    # hraftd answered a stale request with a zero header; ours carries version 3
    ours = hc.encode_response(InstallSnapshotResponse(2, False, 0))
    assert msgpack.unpackb(ours[1:]) == {"ProtocolVersion": 3, "Success": False, "Term": 2}


def test_configuration_round_trip_matches_go_bytes():
    _, obj = decode_one_request(fixture("append_entries_from_start"))
    go_bytes = obj[b"Entries"][4][b"Data"]
    conf = hc.decode_configuration(go_bytes)
    assert hc.encode_configuration(conf) == go_bytes
    staging = hc.pack({"Servers": [{"Address": "a:1", "ID": "s", "Suffrage": 2}]})
    assert hc.decode_configuration(staging).servers[0].suffrage is Suffrage.NONVOTER


def test_request_vote_and_snapshot_requests_round_trip():
    vote = RequestVote(4, "node0", LEADER, 9, 3, leadership_transfer=True)
    d = hc.StreamDecoder()
    d.push(hc.encode_request(vote))
    assert hc.decode_request(*d.next_request(), id_of) == vote
    meta = SnapshotMeta(20, 3, Configuration((Server("node0", LEADER),)), 5, "", 1234)
    snap = InstallSnapshot(3, "node0", LEADER, meta)
    d.push(hc.encode_request(snap) + b"x" * 10)
    assert hc.decode_request(*d.next_request(), id_of) == snap
    assert d.read_raw(4) == b"xxxx"
    assert d.read_raw(100) == b"x" * 6  # only what is buffered
    d.push(hc.encode_request(TimeoutNow(3, "node0")))
    assert hc.decode_request(*d.next_request(), id_of, timeout_now_term=3) == TimeoutNow(3, "")


def test_pre_vote_cannot_be_encoded():
    with pytest.raises(CodecError):
        hc.encode_request(RequestVote(4, "a", "a:1", 1, 1, pre_vote=True))


def test_stream_decoder_assembles_split_frames_byte_by_byte():
    raw = fixture("append_entries_from_start") + fixture("heartbeat")
    d = hc.StreamDecoder()
    got = []
    for b in raw:
        d.push(bytes([b]))
        while (item := d.next_request()) is not None:
            got.append(item)
    assert [hc.is_heartbeat(o) for _, o in got] == [False, True]


@pytest.mark.parametrize("raw", [
    b"\x09\x80",                       # unknown rpc type
    b"\x00\xc1",                       # never-used msgpack byte
])
def test_garbage_raises_codec_error(raw):
    d = hc.StreamDecoder()
    d.push(raw)
    with pytest.raises(CodecError):
        d.next_request()


@pytest.mark.parametrize("obj", [
    [1, 2],
    {b"Term": "x"},
    {b"Term": -1},
    {b"Term": 1, b"Leader": 5},
    {b"Term": 1, b"Entries": {}},
    {b"Term": 1, b"Entries": [{b"Type": 2, b"Index": 1, b"Term": 1}]},
    {b"Term": 1, b"Entries": [{b"Type": 5, b"Data": b"\xc1", b"Index": 1, b"Term": 1}]},
    {b"Term": 1, b"ProtocolVersion": 9},
])
def test_bad_append_entries_objects_raise_codec_error(obj):
    with pytest.raises(CodecError):
        hc.decode_request(hc.RPC_APPEND_ENTRIES, obj, id_of)


def test_unknown_keys_are_ignored_like_go():
    obj = {b"Term": 2, b"Leader": LEADER.encode(), b"ID": b"node0", b"Addr": b"x"}
    assert hc.decode_request(hc.RPC_APPEND_ENTRIES, obj, id_of).heartbeat
