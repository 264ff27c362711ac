"""The TCP transport on loopback: ordering, channel separation, hostile input,
reconnection with backoff, snapshot streaming and clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import struct
from datetime import timedelta

import msgpack
import pytest
import rawsock

from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from raftkv.transport.channel import APPEND, HEARTBEAT, FailureLogRounds, backoff_delay, channel_for, failure_report
from raftkv.transport.codec import (
    Hello,
    SnapshotAck,
    SnapshotChunk,
    encode,
    hello,
    read_frame,
)
from raftkv.transport.gotext import dial_error_text
from raftkv.transport.options import TransportOptions
from raftkv.transport.stream import dial_address
from raftkv.transport.raftkv_protocol.tcp import TcpTransport

MiB = 1024 * 1024


def append(i: int, size: int = 8) -> AppendEntries:
    return AppendEntries(1, "n1", "", i, 1, (Entry(i + 1, 1, data=b"x" * size),), i)


def heartbeat(i: int) -> AppendEntries:
    return AppendEntries(1, "n1", "", 0, 0, (), 0, heartbeat=True, read_seq=i)


def port_of(t: TcpTransport) -> int:
    return dial_address(t.address)[1]


async def dead_address(transports) -> str:
    """An address nobody listens on: bind a port, then let it go."""
    t, _, _ = await transports("ghost")
    address = t.address
    await t.close()
    return address


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):  # a reset also means "closed"
        while chunk := await reader.read(65536):
            data += chunk
    return data


# --- pure helpers -------------------------------------------------------------

def test_channel_routing():
    assert channel_for(append(1)) == APPEND
    assert channel_for(AppendEntries(1, "n1", "", 5, 1, (), 5)) == APPEND  # probes keep their order
    assert channel_for(heartbeat(1)) == HEARTBEAT
    assert channel_for(RequestVote(1, "n1", "", 0, 0)) == HEARTBEAT
    assert channel_for(RequestVoteResponse(1, True)) == HEARTBEAT
    assert channel_for(TimeoutNow(1, "n1")) == HEARTBEAT


def test_backoff_sequence():
    ms = [round(backoff_delay(n) * 1000) for n in range(1, 11)]
    assert ms == [10, 10, 10, 20, 40, 80, 160, 320, 500, 500]
    assert backoff_delay(10_000) == 0.5


def test_backoff_follows_hashicorps_capped_exponential_backoff():
    # hashicorp's heartbeat loop: cappedExponentialBackoff(10ms, failures, 12,
    # HeartbeatTimeout/2), failures counted from 0 before the increment
    def capped(failures: int, cap: float) -> float:
        base, power = 0.010, min(failures, 12)
        while power > 2:
            if base > cap:
                return cap
            base *= 2
            power -= 1
        return min(base, cap)
    for cap in (0.15, 0.5, 5.0):
        assert [backoff_delay(n, cap=cap) for n in range(1, 13)] == pytest.approx(
            [capped(n - 1, cap) for n in range(1, 13)])


def test_log_rounds_write_the_first_failure_then_one_line_per_interval():
    rounds = FailureLogRounds(interval=5.0)
    # a dial every half second for 12 seconds
    written = [t / 2 for t in range(24) if rounds.admit(HEARTBEAT, t / 2)]
    assert written == [0.0, 5.0, 10.0]
    assert rounds.held == 24 - 3


def test_log_rounds_a_new_report_or_a_new_streak_is_written_at_once():
    rounds = FailureLogRounds(interval=5.0)
    assert rounds.admit(RequestVote, 0.0)
    assert not rounds.admit(RequestVote, 0.1)
    assert rounds.admit(AppendEntries, 0.2)       # the candidate won: now it heartbeats
    assert not rounds.admit(AppendEntries, 0.3)
    rounds.reset()                                 # the peer was reached again
    assert rounds.admit(AppendEntries, 0.4)


def test_failure_reports_use_hashicorps_messages_and_keys():
    server = "{Voter n2 127.0.0.1:9001}"
    err = "dial tcp 127.0.0.1:9001: connect: connection refused"

    def report(kind, last):
        return failure_report(kind, last, "n2", "127.0.0.1:9001", server, 0.02, err)

    assert report(APPEND, None) == ("ERROR", "failed to appendEntries to", [("peer", server), ("error", err)])
    assert report(HEARTBEAT, heartbeat(1)) == ("ERROR", "failed to heartbeat to", [
        ("peer", "127.0.0.1:9001"), ("backoff time", timedelta(milliseconds=20)), ("error", err)])
    assert report(HEARTBEAT, RequestVote(7, "n1", "", 0, 0)) == (
        "ERROR", "failed to make requestVote RPC", [("target", server), ("error", err), ("term", 7)])
    assert report(HEARTBEAT, TimeoutNow(7, "n1")) == (
        "DEBUG", f"failed to make TimeoutNow RPC to n2: {err}", [])
    # answers are not this node's RPCs: a follower never reports them
    assert report(HEARTBEAT, RequestVoteResponse(7, True)) is None
    assert report(HEARTBEAT, AppendEntriesResponse(7, True, 3, 3)) is None


def test_go_style_errors_and_addresses():
    assert dial_error_text("127.0.0.1:9001", ConnectionRefusedError(111, "Connection refused")) == \
        "dial tcp 127.0.0.1:9001: connect: connection refused"
    assert dial_error_text("10.0.0.1:9001", TimeoutError()) == "dial tcp 10.0.0.1:9001: i/o timeout"
    assert dial_address("[::1]:9000") == ("::1", 9000)
    assert dial_address("node-2.example:9001") == ("node-2.example", 9001)
    with pytest.raises(ValueError, match="missing port"):
        dial_address("localhost")
    for bad in ("localhost:0", "localhost:65536", "localhost:http", "[::1]:"):
        with pytest.raises(ValueError, match="invalid port|missing port"):
            dial_address(bad)
    assert dial_error_text("localhost", ValueError("address localhost: missing port in address")) == \
        "dial tcp: address localhost: missing port in address"
    assert dial_error_text("[fe80::1]:9001", socket.gaierror(-2, "Name or service not known")) == \
        "dial tcp: lookup fe80::1: no such host"


def test_authentication_is_refused_until_implemented():
    with pytest.raises(NotImplementedError):
        TcpTransport("n1", "127.0.0.1", 0, lambda f, m: None, TransportOptions(authenticate=object()))


# --- exchange -----------------------------------------------------------------

async def test_start_binds_an_os_port(transports):
    t, _, _ = await transports("n1")
    host, port = dial_address(t.address)
    assert host == "127.0.0.1" and port > 0


async def test_two_transports_exchange_many_messages_in_order(transports, watch):
    a, a_in, _ = await transports("n1", max_queue_frames=100_000)
    b, b_in, b_log = await transports("n2", max_queue_frames=100_000)
    n = 3000
    for i in range(n):
        a.send("n2", b.address, RequestVoteResponse(i, True))
        a.send("n2", b.address, append(i))
        b.send("n1", a.address, RequestVoteResponse(i, False))
    await watch.until(lambda: len(b_in.items) == 2 * n and len(a_in.items) == n)
    assert [m.term for m in b_in.of(RequestVoteResponse)] == list(range(n))
    assert [m.prev_log_index for m in b_in.of(AppendEntries)] == list(range(n))
    assert b_in.of(AppendEntries)[7] == append(7)
    assert [m.term for m in a_in.of(RequestVoteResponse)] == list(range(n))
    assert {f for f, _ in b_in.items} == {"n1"} and {f for f, _ in a_in.items} == {"n2"}
    # n1 dialled n2 once per channel, and replies from n2 came over n2's own dial
    accepted = b_log.find("accepted connection")
    assert len(accepted) == 2
    level, logger, _, fields = accepted[0]
    assert (level, logger) == ("DEBUG", "raft.net")
    assert fields["local-address"] == b.address
    assert fields["remote-address"].startswith("127.0.0.1:")
    assert a.stats()["n2"][APPEND]["sent"] == n
    assert a.dropped() == 0


async def test_connections_set_tcp_nodelay(transports, watch):
    a, _, _ = await transports("n1")
    b, b_in, _ = await transports("n2")
    a.send("n2", b.address, heartbeat(1))
    await watch.until(lambda: b_in.items)
    sock = a._channels[("n2", HEARTBEAT)].conn.writer.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_heartbeats_do_not_wait_behind_a_stalled_append_connection(transports, watch):
    # A fake peer that reads one frame from the append connection and then
    # stops reading it, while it keeps reading the heartbeat connection.
    stalled = asyncio.Event()
    release = asyncio.Event()
    received: list[object] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader, writer):
        writers.append(writer)
        assert type(await read_frame(reader)) is Hello
        msg = await read_frame(reader)
        if type(msg) is AppendEntries and not msg.heartbeat:
            stalled.set()
            await release.wait()
            return
        while msg is not None:
            received.append(msg)
            watch.notify()
            msg = await read_frame(reader)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        peer = "127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        a, _, _ = await transports("n1", io_timeout=60.0)
        for i in range(32):
            a.send("n2", peer, append(i, size=MiB))
        await asyncio.wait_for(stalled.wait(), 15)
        for i in range(10):
            a.send("n2", peer, heartbeat(i))
        a.send("n2", peer, RequestVote(2, "n1", a.address, 0, 0))
        await watch.until(lambda: len(received) == 11)
        assert [m.read_seq for m in received[:10]] == list(range(10))
        assert type(received[10]) is RequestVote
        # the 32 MiB batch is still stuck behind the peer that stopped reading
        assert a.stats()["n2"][APPEND]["sent"] == 0
    finally:
        release.set()
        for w in writers:
            w.transport.abort()
        server.close()
        await server.wait_closed()


# --- hostile input ------------------------------------------------------------

HELLO = encode(hello("intruder", "127.0.0.1:1"))


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# An AppendEntries' first six fields; the entries array header follows.
AE_HEAD = b"\x9a" + msgpack.packb([3, 1, "n1", "a", 0, 0])[1:]
AE_TAIL = msgpack.packb(0) + b"\xc2\x00"   # leader_commit, heartbeat, read_seq


def array_of_millions(size: int = 6_000_000) -> bytes:
    """The frame that took a follower from 75 to 514 MB: a msgpack array
    claiming five million elements, then ``size`` one-byte empty arrays."""
    return framed(b"\xdd" + struct.pack(">I", 5_000_000) + b"\x90" * size)


def nested_arrays(size: int) -> bytes:
    """An AppendEntries whose entries are arrays of 1024 arrays of four empty
    arrays: a valid start, every array within its cap, ~40 objects a byte."""
    inner = b"\xdc" + struct.pack(">H", 1024) + (b"\x94" + b"\x90" * 4) * 1024
    count = max(1, min(1024, size // len(inner)))
    return framed(AE_HEAD + b"\xdc" + struct.pack(">H", count) + inner * count + AE_TAIL)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_from_now() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return
    it; ``peak_rss()`` then tells the most this process held since. Where
    the reset is not allowed, the current RSS stands in for the peak."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss()


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return max(int(line.split()[1]) * 1024, rss())
    return rss()


@pytest.mark.parametrize("payload, half_close, fragment", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, "exceeds the limit"),
    (os.urandom(64), False, ""),
    (HELLO + struct.pack(">I", 0xFFFFFFF0), False, "exceeds the limit"),
    (HELLO + b"\x00\x00\x00\x03\xc1\xc1\xc1", False, "malformed msgpack"),
    (HELLO + struct.pack(">I", 4) + b"\x93\x63\x01\x02", False, "unknown message type code 99"),
    (HELLO + encode(TimeoutNow(1, "n1"))[:-3], True, "truncated frame"),
    (HELLO[:-1], True, "truncated frame"),
    (encode(TimeoutNow(1, "n1")), False, "expected Hello as the first frame, got TimeoutNow"),
    (encode(Hello("etcd", 1, "x", "y")), False, "bad magic"),
    (encode(Hello("raftkv", 1, "x", "y")), False, "unsupported protocol version 1"),
    (HELLO + encode(SnapshotChunk(b"", True)), False, "unexpected SnapshotChunk"),
    (HELLO + HELLO, False, "unexpected Hello"),
    (HELLO + array_of_millions(64 * 1024), False,
     "exceeds the limit of 65536 for anything but AppendEntries"),
    (HELLO + framed(AE_HEAD + b"\xdd" + struct.pack(">I", 5_000_000) + b"\x90" * 1000), False,
     "5000000 exceeds max_array_len(1024)"),
    (HELLO + nested_arrays(1 << 20), False, "max_objects(8256)"),
    (HELLO + encode(TimeoutNow(1, "n" * 20_000)), False, "exceeds max_str_len(16384)"),
    (HELLO + framed(b"\x92\x07\x81\xa1k\x01"), False, "1 exceeds max_map_len(0)"),
], ids=["http", "random", "oversized", "bad-msgpack", "unknown-type", "truncated-body",
        "truncated-hello", "no-hello", "bad-magic", "bad-version", "stray-chunk", "second-hello",
        "array-of-millions", "entries-over-cap", "nested-arrays", "long-text", "map"])
async def test_bad_input_closes_only_that_connection(transports, watch, payload, half_close, fragment):
    a, a_in, a_log = await transports("n1")
    b, b_in, b_log = await transports("n2")
    a.send("n2", b.address, TimeoutNow(1, "n1"))
    b.send("n1", a.address, RequestVoteResponse(1, True))
    await watch.until(lambda: len(b_in.items) == 1 and len(a_in.items) == 1)

    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(b))
    try:
        writer.write(payload)
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(15):
            assert await read_until_closed(reader) == b""  # b closed it, and said nothing
    finally:
        writer.close()
    await watch.until(lambda: b_log.find("failed to decode incoming command"))
    [(level, logger, _, fields)] = b_log.find("failed to decode incoming command")
    assert (level, logger) == ("ERROR", "raft.net")
    assert fragment in fields["error"]
    assert [m for f, m in b_in.items if f == "intruder"] == []

    # the listener and the well-behaved connections carry on untouched
    a.send("n2", b.address, TimeoutNow(2, "n1"))
    b.send("n1", a.address, RequestVoteResponse(2, True))
    await watch.until(lambda: len(b_in.items) == 2 and len(a_in.items) == 2)
    assert len(b_log.find("accepted connection")) == 2  # n1's original dial + the intruder
    assert not a_log.find("failed to heartbeat to") and not b_log.find("failed to heartbeat to")
    c, _, _ = await transports("n3")
    c.send("n2", b.address, TimeoutNow(3, "n3"))
    await watch.until(lambda: ("n3", TimeoutNow(3, "n3")) in b_in.items)


async def test_connection_that_says_nothing_is_not_an_error(transports, watch):
    b, _, b_log = await transports("n2")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(b))
    writer.close()
    await watch.until(lambda: b_log.find("accepted connection"))
    c, c_in, _ = await transports("n3")
    b.send("n3", c.address, TimeoutNow(1, "n2"))  # let b's loop run well past the close
    await watch.until(lambda: c_in.items)
    assert not b_log.find("failed to decode incoming command")


async def test_handler_exceptions_are_logged_and_do_not_drop_the_connection(transports, watch):
    seen = []

    def handler(from_id, message):
        seen.append(message)
        watch.notify()
        if message.term == 1:
            raise RuntimeError("boom")

    b, _, b_log = await transports("n2")
    b.handler = handler
    a, _, _ = await transports("n1")
    a.send("n2", b.address, TimeoutNow(1, "n1"))
    a.send("n2", b.address, TimeoutNow(2, "n1"))
    await watch.until(lambda: len(seen) == 2)
    [(_, _, _, fields)] = b_log.find("failed to handle incoming command")
    assert "boom" in fields["error"]
    assert len(b_log.find("accepted connection")) == 1


def _throw(port: int, data: bytes) -> None:
    """Send ``data`` on a fresh connection from a plain blocking socket (no
    copy of it is buffered on our side) and wait for the other end to close."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s, \
            contextlib.suppress(OSError):  # reset as soon as it is refused
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        rawsock.read_until_closed(s)


@pytest.mark.parametrize("make, buffered, error", [
    (array_of_millions, False, "exceeds the limit of 65536 for anything but AppendEntries"),
    # A valid start makes the receiver take the whole frame in before the
    # walk refuses it: what it costs is the frame's buffer (grown by
    # reallocation, so up to twice its size), not its ~40 objects a byte.
    (lambda: nested_arrays(6_000_000), True, "max_objects(8256)"),
], ids=["array-of-millions", "nested-arrays"])
async def test_a_6mb_frame_of_empty_arrays_leaves_memory_flat(transports, watch, make, buffered, error):
    b, b_in, b_log = await transports("n2")
    data = HELLO + make()                 # built before the measurement,
    await asyncio.to_thread(_throw, port_of(b), b"")  # and so is the thread that sends it
    gc.collect()
    before = peak_rss_from_now()
    for _ in range(3):
        await asyncio.to_thread(_throw, port_of(b), data)
    await watch.until(lambda: len(b_log.find("failed to decode incoming command")) == 3)
    peak, after = peak_rss() - before, rss() - before
    limit = 4 * MiB + (2 * len(data) if buffered else 0)
    print(f"RSS after three {len(data) / 1e6:.1f} MB frames: peak +{peak / 1e6:.1f} MB, then {after / 1e6:+.1f} MB")
    assert all(error in line[3]["error"] for line in b_log.find("failed to decode incoming command"))
    assert peak < limit, f"RSS peaked {peak / 1e6:.1f} MB higher"
    assert b_in.items == []


async def test_a_frame_left_unfinished_is_dropped_after_io_timeout(transports, watch):
    b, b_in, b_log = await transports("n2", io_timeout=0.5, idle_timeout=60.0)
    frame = encode(AppendEntries(1, "intruder", "", 0, 0, (Entry(1, 1, data=b"x" * 1000),), 0))
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(b))
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(HELLO + frame[:10])
        # a byte at a time is progress on the socket but not a frame: the
        # frame as a whole is due within io_timeout of its first byte
        for byte in frame[10:40]:
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.1)
        async with asyncio.timeout(15):
            assert await read_until_closed(reader) == b""
        assert loop.time() - started < 5
    finally:
        writer.close()
    await watch.until(lambda: b_log.find("failed to decode incoming command"))
    [(level, _, _, fields)] = b_log.find("failed to decode incoming command")
    assert level == "ERROR"
    assert fields["error"].startswith("i/o timeout: ") and "bytes of an incomplete frame for 500ms" in fields["error"]
    assert b_in.items == []


async def test_a_silent_connection_is_closed_before_and_after_the_hello(transports, watch):
    b, _, b_log = await transports("n2", io_timeout=0.5, idle_timeout=0.5)
    silent = await asyncio.open_connection("127.0.0.1", port_of(b))
    greeted = await asyncio.open_connection("127.0.0.1", port_of(b))
    greeted[1].write(HELLO)
    try:
        async with asyncio.timeout(15):
            assert await read_until_closed(silent[0]) == b""
            assert await read_until_closed(greeted[0]) == b""
    finally:
        silent[1].close()
        greeted[1].close()
    await watch.until(lambda: b_log.find("closing idle connection") and b_log.find("failed to decode incoming command"))
    [(level, _, _, fields)] = b_log.find("failed to decode incoming command")
    assert (level, fields["error"]) == ("ERROR", "i/o timeout waiting for Hello")
    [(level, logger, _, fields)] = b_log.find("closing idle connection")
    assert (level, logger, fields["node-id"]) == ("DEBUG", "raft.net", "intruder")
    assert fields["idle"] == timedelta(milliseconds=500)
    assert not b.acceptor.connections


async def test_incomplete_large_frames_of_all_connections_share_one_budget(transports, watch):
    b, b_in, b_log = await transports("n2", max_frame=MiB, max_held=2 * MiB, snapshot_chunk_size=64 * 1024)
    assert TcpTransport("n9", "127.0.0.1", 0, b_in).options.max_held == 4 * 8 * MiB  # four frames by default
    most_of_a_frame = HELLO + framed(AE_HEAD + b"\xc4" * (1000 * 1024))[:900 * 1024]
    held = []
    try:
        for i in range(2):
            held.append(await asyncio.open_connection("127.0.0.1", port_of(b)))
            held[-1][1].write(most_of_a_frame)
            await watch.until(lambda i=i: b.acceptor.held >= (i + 1) * 800 * 1024)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(b))
        try:
            writer.write(most_of_a_frame)
            async with asyncio.timeout(15):
                assert await read_until_closed(reader) == b""
        finally:
            writer.close()
        await watch.until(lambda: b_log.find("failed to decode incoming command"))
        [(_, _, _, fields)] = b_log.find("failed to decode incoming command")
        assert fields["error"].startswith("incomplete frames of all connections would hold ")
        assert fields["error"].endswith(" bytes, over the limit of 2097152")
        assert len(b.acceptor.connections) == 2  # the two within the budget still wait for the rest
    finally:
        for _, writer in held:
            writer.transport.abort()
    await watch.until(lambda: not b.acceptor.connections)
    assert b.acceptor.held == 0 and b_in.items == []


async def test_a_quiet_peer_redials_without_a_word_after_its_idle_connection_was_closed(transports, watch):
    a, _, a_log = await transports("n1")
    b, b_in, b_log = await transports("n2", idle_timeout=0.3)
    a.send("n2", b.address, TimeoutNow(1, "n1"))
    a.send("n2", b.address, append(1))
    await watch.until(lambda: len(b_in.items) == 2)
    # both of n1's channels fall idle and n2 closes them; n1 notices the EOF
    await watch.until(lambda: len(b_log.find("closing idle connection")) == 2)
    await watch.until(lambda: not any(ch["connected"] for ch in a.stats()["n2"].values()))
    a.send("n2", b.address, TimeoutNow(2, "n1"))
    a.send("n2", b.address, append(2))
    await watch.until(lambda: len(b_in.items) == 4)
    assert sorted(type(m).__name__ for _, m in b_in.items) == ["AppendEntries"] * 2 + ["TimeoutNow"] * 2
    assert len(b_log.find("accepted connection")) == 4
    assert [line for line in a_log.lines if line[0] in ("WARN", "ERROR")] == []
    assert all(ch["failures"] == 0 and ch["dropped"] == 0 for ch in a.stats()["n2"].values())


async def test_connections_beyond_max_connections_are_closed_at_once(transports, watch):
    b, b_in, b_log = await transports("n2", max_connections=3, log_interval=60.0)
    held = []
    try:
        for _ in range(3):
            held.append(await asyncio.open_connection("127.0.0.1", port_of(b)))
            held[-1][1].write(HELLO)
        await watch.until(lambda: len(b_log.find("accepted connection")) == 3)
        loop = asyncio.get_running_loop()
        for _ in range(5):
            started = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(b))
            try:
                async with asyncio.timeout(15):
                    assert await read_until_closed(reader) == b""
            finally:
                writer.close()
            assert loop.time() - started < 2  # at once, not after a timeout
        assert b.refused_connections == 5
        # one line for the burst, however long it lasts
        [(level, logger, _, fields)] = b_log.find("too many connections, closing new ones")
        assert (level, logger) == ("WARN", "raft.net")
        assert fields["limit"] == 3 and fields["refused"] == 1
        assert fields["remote-address"].startswith("127.0.0.1:")
        assert len(b_log.find("accepted connection")) == 3
    finally:
        for _, writer in held:
            writer.close()
    # room again once those are gone
    await watch.until(lambda: not b.acceptor.connections)
    a, _, _ = await transports("n1")
    a.send("n2", b.address, TimeoutNow(1, "n1"))
    await watch.until(lambda: b_in.items == [("n1", TimeoutNow(1, "n1"))])


async def test_refusal_lines_are_rate_limited_and_count_what_they_held_back(transports, watch):
    b, _, b_log = await transports("n2", max_connections=0, log_interval=0.2)
    for _ in range(3):
        await asyncio.to_thread(_throw, port_of(b), b"")
    await watch.until(lambda: b.refused_connections == 3)
    await asyncio.sleep(0.25)  # let the log interval pass: what is being tested is time
    await asyncio.to_thread(_throw, port_of(b), b"")
    await watch.until(lambda: len(b_log.find("too many connections, closing new ones")) == 2)
    assert [line[3]["refused"] for line in b_log.find("too many connections, closing new ones")] == [1, 3]


# --- failures, backoff, reconnection ------------------------------------------

async def test_peer_down_then_up_reconnects_and_logs_once_per_streak(transports, watch):
    b, b_in, _ = await transports("n2")
    port = port_of(b)
    peer = f"127.0.0.1:{port}"
    server = f"{{Voter n2 {peer}}}"
    a, _, a_log = await transports("n1", describe_peer=lambda pid: server if pid == "n2" else pid)

    a.send("n2", peer, heartbeat(0))
    a.send("n2", peer, append(0))
    await watch.until(lambda: len(b_in.items) == 2)

    await b.close()
    # the dropped connections are noticed without any traffic, and since no
    # RPC was waiting, nothing failed yet: no line
    await watch.until(lambda: not any(ch["connected"] for ch in a.stats()["n2"].values()))
    assert not a_log.lines
    for i in range(1, 41):
        a.send("n2", peer, heartbeat(i))
    a.send("n2", peer, append(1))
    # the dials keep failing on the backoff schedule ...
    await watch.until(lambda: a.stats()["n2"][HEARTBEAT]["failures"] >= 7
                      and a.stats()["n2"][APPEND]["failures"] >= 7)
    # ... and each channel has said so once, in hashicorp's words and keys
    refused = f"dial tcp {peer}: connect: connection refused"
    assert a_log.lines == [
        ("ERROR", "raft", "failed to heartbeat to",
         {"peer": peer, "backoff time": timedelta(milliseconds=10), "error": refused}),
        ("ERROR", "raft", "failed to appendEntries to", {"peer": server, "error": refused}),
    ]
    assert list(a_log.lines[0][3]) == ["peer", "backoff time", "error"]
    assert a.stats()["n2"][HEARTBEAT]["held_lines"] == a.stats()["n2"][HEARTBEAT]["failures"] - 1

    b2, b2_in, _ = await transports("n2", port=port)
    await watch.until(lambda: len(b2_in.of(AppendEntries)) == 41)
    assert [m.read_seq for m in b2_in.of(AppendEntries) if m.heartbeat] == list(range(1, 41))
    assert [m for m in b2_in.of(AppendEntries) if not m.heartbeat] == [append(1)]
    lines_at_reconnect = len(a_log.lines)
    a.send("n2", peer, heartbeat(99))
    await watch.until(lambda: len(b2_in.items) == 42)
    assert len(a_log.lines) == lines_at_reconnect


async def test_a_dead_peer_costs_one_line_per_log_interval(transports, watch):
    peer = await dead_address(transports)
    a, _, a_log = await transports("n1", log_interval=0.4)
    times: list[float] = []
    loop = asyncio.get_running_loop()
    real_log = a._log

    def log(*args):
        times.append(loop.time())
        real_log(*args)
    a._log = log

    start = loop.time()
    i = 0
    while len(a_log.find("failed to heartbeat to")) < 3:  # a leader heartbeating every 10ms
        i += 1
        a.send("n2", peer, heartbeat(i))
        await asyncio.sleep(0.01)
        assert loop.time() - start < 10
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert all(gap >= 0.4 for gap in gaps), gaps
    # many more dials than lines: the backoff redials, the rounds keep quiet
    assert a.stats()["n2"][HEARTBEAT]["failures"] >= 3 + 5


async def test_failures_are_reported_as_the_rpc_that_failed(transports, watch):
    peer = await dead_address(transports)
    server = f"{{Voter n2 {peer}}}"
    a, _, a_log = await transports("n1", describe_peer=lambda pid: server)
    # a follower answering a dead leader: hashicorp says nothing
    a.send("n2", peer, RequestVoteResponse(3, False))
    await watch.until(lambda: a.stats()["n2"][HEARTBEAT]["failures"] >= 3)
    assert not a_log.lines
    # a candidate asking for a vote
    a.send("n2", peer, RequestVote(4, "n1", a.address, 7, 3, pre_vote=True))
    await watch.until(lambda: a_log.lines)
    refused = f"dial tcp {peer}: connect: connection refused"
    assert a_log.lines == [("ERROR", "raft", "failed to make requestVote RPC",
                            {"target": server, "error": refused, "term": 4})]
    assert list(a_log.lines[0][3]) == ["target", "error", "term"]
    # elected: its first heartbeat failure is news, written at once
    a.send("n2", peer, heartbeat(1))
    await watch.until(lambda: len(a_log.lines) == 2)
    assert a_log.lines[1][2] == "failed to heartbeat to"
    # a leadership transfer: hashicorp's DEBUG line, the error text alone
    a.send("n2", peer, TimeoutNow(4, "n1"))
    await watch.until(lambda: len(a_log.lines) == 3)
    assert a_log.lines[2] == ("DEBUG", "raft", f"failed to make TimeoutNow RPC to n2: {refused}", {})


async def test_a_connection_that_stayed_up_ends_the_streak(transports, watch):
    b, b_in, _ = await transports("n2")
    port = port_of(b)
    a, _, a_log = await transports("n1", backoff_cap=0.05)
    a.send("n2", b.address, heartbeat(0))
    await watch.until(lambda: b_in.items)
    await b.close()
    a.send("n2", b.address, heartbeat(1))
    await watch.until(lambda: a_log.lines)
    # back, and reachable for longer than the backoff cap
    b2, b2_in, _ = await transports("n2", port=port)
    await watch.until(lambda: b2_in.items)
    await asyncio.sleep(0.2)
    assert a.stats()["n2"][HEARTBEAT]["failures"] == 0
    await b2.close()
    a.send("n2", b.address, heartbeat(2))
    # well within log_interval (5s), yet a new streak: written at once
    await watch.until(lambda: len(a_log.lines) == 2)
    assert [line[2] for line in a_log.lines] == ["failed to heartbeat to"] * 2


async def test_outbound_queue_is_bounded_and_counts_drops(transports):
    peer = await dead_address(transports)
    a, _, _ = await transports("n1", max_queue_frames=10)
    for i in range(100):
        a.send("n2", peer, heartbeat(i))
    assert a.dropped("n2") == 90
    assert a.stats()["n2"][HEARTBEAT]["queued"] == 10

    c, _, _ = await transports("n3", max_queue_bytes=10_000)
    for i in range(100):
        c.send("n2", peer, append(i, size=1000))
    stats = c.stats()["n2"][APPEND]
    assert stats["queued_bytes"] <= 10_000 and stats["dropped"] == 100 - stats["queued"]


async def test_oversized_outbound_frame_is_dropped_and_logged(transports, watch):
    b, b_in, _ = await transports("n2")
    a, _, a_log = await transports("n1", max_frame=2 * MiB)
    a.send("n2", b.address, append(1, size=3 * MiB))
    a.send("n2", b.address, append(2))
    await watch.until(lambda: b_in.items)
    assert b_in.of(AppendEntries) == [append(2)]
    [(level, _, _, fields)] = a_log.find("failed to encode outgoing command")
    assert level == "ERROR" and "exceeds the limit" in fields["error"]


async def test_new_address_for_a_peer_redials(transports, watch):
    b1, b1_in, _ = await transports("n2")
    b2, b2_in, _ = await transports("n2")
    a, _, a_log = await transports("n1")
    a.send("n2", b1.address, TimeoutNow(1, "n1"))
    await watch.until(lambda: b1_in.items)
    a.send("n2", b2.address, TimeoutNow(2, "n1"))
    await watch.until(lambda: b2_in.items)
    assert b2_in.items == [("n1", TimeoutNow(2, "n1"))]
    assert not a_log.find("failed to heartbeat to")


async def test_close_closes_the_listener_and_every_connection(transports, watch):
    a, a_in, _ = await transports("n1")
    b, b_in, b_log = await transports("n2")
    a.send("n2", b.address, TimeoutNow(1, "n1"))
    b.send("n1", a.address, TimeoutNow(1, "n2"))
    await watch.until(lambda: a_in.items and b_in.items)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(a))
    writer.write(HELLO)
    try:
        await a.close()
        async with asyncio.timeout(15):
            await read_until_closed(reader)  # our idle inbound connection was closed
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port_of(a))
        # n2's dial to n1 notices, without sending anything; no RPC failed
        await watch.until(lambda: not b.stats()["n1"][HEARTBEAT]["connected"])
        assert not b_log.find("failed to heartbeat to")
        a.send("n2", b.address, TimeoutNow(2, "n1"))  # after close: silently dropped
        await a.close()  # idempotent
    finally:
        writer.close()


# --- snapshots ----------------------------------------------------------------

class Sink:
    """A snapshot_sink writer kept in memory (the tests' files are small)."""

    def __init__(self, watch, fail_on_write: int | None = None):
        self.watch = watch
        self.chunks: list[bytes] = []
        self.closed = self.cancelled = False
        self.fail_on_write = fail_on_write

    def write(self, data: bytes) -> None:
        if self.fail_on_write is not None and len(self.chunks) == self.fail_on_write:
            raise OSError(28, "no space left on device")
        self.chunks.append(bytes(data))

    def close(self):
        self.closed = True
        return ("handle", len(self.chunks))

    def cancel(self) -> None:
        self.cancelled = True
        self.watch.notify()


class Source:
    def __init__(self, path, watch):
        self.f = open(path, "rb")
        self.watch = watch
        self.closed = False

    def read(self, n: int) -> bytes:
        return self.f.read(n)

    def close(self) -> None:
        self.f.close()
        self.closed = True
        self.watch.notify()


def snapshot_offer(meta: SnapshotMeta, leader_address: str = "127.0.0.1:1") -> InstallSnapshot:
    return InstallSnapshot(3, "n1", leader_address, meta)


@pytest.fixture
def snapshot_file(tmp_path):
    data = os.urandom(5 * MiB + 12345)
    path = tmp_path / "3-100-1.snap"
    path.write_bytes(data)
    return path, data


async def test_snapshot_streams_in_chunks_and_arrives_identical(transports, watch, snapshot_file):
    path, data = snapshot_file
    sources: list[Source] = []
    sinks: list[Sink] = []
    failed: list[str] = []

    def source(meta):
        sources.append(Source(path, watch))
        return sources[-1]

    def sink(from_id, meta):
        assert from_id == "n1"
        sinks.append(Sink(watch))
        return sinks[-1]

    a, _, a_log = await transports("n1", snapshot_source=source, on_snapshot_failed=failed.append)
    b, b_in, _ = await transports("n2", snapshot_sink=sink)
    config = Configuration((Server("n1", a.address), Server("n2", b.address)))
    meta = SnapshotMeta(100, 3, config, 90, "3-100-1", len(data))
    a.send("n2", b.address, snapshot_offer(meta, a.address))
    a.send("n2", b.address, heartbeat(1))  # ordinary traffic is not held up
    await watch.until(lambda: b_in.of(InstallSnapshot) and sources and sources[0].closed)

    [offer] = b_in.of(InstallSnapshot)
    assert offer.meta == meta and offer.leader_address == a.address
    [s] = sinks
    assert offer.data == ("handle", len(s.chunks))
    assert b"".join(s.chunks) == data
    assert len(s.chunks) >= 6 and max(map(len, s.chunks)) <= MiB
    assert s.closed and not s.cancelled
    assert failed == [] and not a_log.find("failed to send snapshot to")
    assert b_in.of(AppendEntries) == [heartbeat(1)]
    assert a.snapshots.sends == {}


async def _stranger_snapshot(port: int) -> object:
    """A stranger streams a complete 16-byte snapshot; what it hears back."""
    conf = Configuration((Server("intruder", "127.0.0.1:1"),))
    offer = InstallSnapshot(1000, "intruder", "127.0.0.1:1", SnapshotMeta(500, 1000, conf, 500, "x", 16))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HELLO + encode(offer) + encode(SnapshotChunk(b"A" * 16, True)))
        async with asyncio.timeout(15):
            return await read_frame(reader)
    finally:
        writer.close()


async def test_a_snapshot_from_a_stranger_is_refused_while_members_are_heard(transports, watch):
    sinks: list[Sink] = []

    def sink(from_id, meta):
        sinks.append(Sink(watch))
        return sinks[-1]

    b, b_in, b_log = await transports("n2", snapshot_sink=sink, stranger_snapshot_after=60.0)
    a, _, _ = await transports("n1")
    b.learn_configuration(Configuration((Server("n1", a.address), Server("n2", b.address))))
    a.send("n2", b.address, heartbeat(1))  # a member is heard from
    await watch.until(lambda: b_in.items)

    ack = await _stranger_snapshot(port_of(b))
    # stored, it would be restored from at the next start: never opened
    assert ack == SnapshotAck(False, "intruder is not in the configuration")
    assert sinks == [] and not b_in.of(InstallSnapshot)
    [(level, logger, _, fields)] = b_log.find("refusing a snapshot from a server not in the configuration")
    assert (level, logger, fields["from"], fields["refused"]) == ("WARN", "raft.net", "intruder", 1)


async def test_a_snapshot_from_a_stranger_is_taken_without_configuration_or_members(transports, watch):
    sinks: list[Sink] = []

    def sink(from_id, meta):
        sinks.append(Sink(watch))
        return sinks[-1]

    # no configuration yet (a new server): the leader is a stranger to it
    b, b_in, _ = await transports("n2", snapshot_sink=sink, stranger_snapshot_after=0.2)
    assert await _stranger_snapshot(port_of(b)) == SnapshotAck(True, "")
    # a configuration, but none of its members heard for stranger_snapshot_after:
    # ours may be the stale one (the core decides, as with any snapshot)
    b.learn_configuration(Configuration((Server("n1", "127.0.0.1:1"), Server("n2", b.address))))
    assert await _stranger_snapshot(port_of(b)) == SnapshotAck(True, "")
    assert len(b_in.of(InstallSnapshot)) == 2 and all(s.closed for s in sinks)


async def test_snapshot_sink_failure_cancels_and_reports_to_the_sender(transports, watch, snapshot_file):
    path, data = snapshot_file
    sinks: list[Sink] = []
    failed: list[str] = []

    def on_failed(peer_id):
        failed.append(peer_id)
        watch.notify()

    a, _, a_log = await transports("n1", snapshot_source=lambda meta: Source(path, watch),
                                   on_snapshot_failed=on_failed)
    b, b_in, b_log = await transports("n2", snapshot_sink=lambda f, m: sinks.append(Sink(watch, fail_on_write=2)) or sinks[-1])
    a.send("n2", b.address, snapshot_offer(SnapshotMeta(100, 3, size=len(data))))
    await watch.until(lambda: failed and sinks and sinks[0].cancelled)
    assert failed == ["n2"]
    assert not sinks[0].closed
    assert b_in.of(InstallSnapshot) == []
    assert "no space left on device" in b_log.find("failed to copy snapshot")[0][3]["error"]
    [(_, logger, _, fields)] = a_log.find("failed to send snapshot to")
    assert logger == "raft" and "no space left on device" in fields["error"]

    # the next offer is independent of the failed one
    sinks.clear()
    b.snapshot_sink = lambda f, m: sinks.append(Sink(watch)) or sinks[-1]
    a.send("n2", b.address, snapshot_offer(SnapshotMeta(100, 3, size=len(data))))
    await watch.until(lambda: b_in.of(InstallSnapshot))
    assert b"".join(sinks[0].chunks) == data


async def test_short_snapshot_is_rejected(transports, watch, snapshot_file):
    path, data = snapshot_file
    sinks: list[Sink] = []
    failed: list[str] = []
    a, _, _ = await transports("n1", snapshot_source=lambda meta: Source(path, watch),
                               on_snapshot_failed=failed.append)
    b, b_in, b_log = await transports("n2", snapshot_sink=lambda f, m: sinks.append(Sink(watch)) or sinks[-1])
    a.send("n2", b.address, snapshot_offer(SnapshotMeta(100, 3, size=len(data) + 1)))
    await watch.until(lambda: failed and sinks and sinks[0].cancelled)
    [(_, _, _, fields)] = b_log.find("failed to receive whole snapshot")
    assert fields == {"received": f"{len(data)} / {len(data) + 1}"}
    assert b_in.of(InstallSnapshot) == []


async def test_snapshot_to_an_unreachable_peer_fails(transports, watch):
    peer = await dead_address(transports)
    failed: list[str] = []
    a, _, a_log = await transports("n1", snapshot_source=lambda meta: pytest.fail("must not open"),
                                   on_snapshot_failed=failed.append)
    a.send("n2", peer, snapshot_offer(SnapshotMeta(1, 1)))
    await watch.until(lambda: failed)
    assert failed == ["n2"]
    assert a_log.find("failed to send snapshot to")[0][3]["error"] == f"dial tcp {peer}: connect: connection refused"


async def test_sender_vanishing_mid_stream_cancels_the_sink(transports, watch):
    sinks: list[Sink] = []
    b, b_in, b_log = await transports("n2", snapshot_sink=lambda f, m: sinks.append(Sink(watch)) or sinks[-1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(b))
    writer.write(encode(hello("n1", "127.0.0.1:1")) + encode(snapshot_offer(SnapshotMeta(1, 1)))
                 + encode(SnapshotChunk(b"partial", False)))
    await writer.drain()
    writer.close()
    await watch.until(lambda: sinks and sinks[0].cancelled)
    assert sinks[0].chunks == [b"partial"] and not sinks[0].closed
    assert b_log.find("failed to copy snapshot")[0][3] == {"error": "unexpected EOF"}
    assert b_in.items == []


async def test_disconnect_forgets_a_peer(transports, watch):
    a, _, _ = await transports("n1")
    b, b_in, b_log = await transports("n2")
    a.send("n2", b.address, TimeoutNow(1, "n1"))
    await watch.until(lambda: b_in.items)
    await a.disconnect("n2")
    assert "n2" not in a.stats()
    a.send("n2", b.address, TimeoutNow(2, "n1"))  # a later send dials afresh
    await watch.until(lambda: len(b_in.items) == 2)
    assert len(b_log.find("accepted connection")) == 2
