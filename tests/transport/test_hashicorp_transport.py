"""The hashicorp transport between two raftkv nodes: answers travel back on the
request's connection, in order, completed from the request."""

from __future__ import annotations

import asyncio

from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    InstallSnapshot,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
)
from raftkv.transport.faults import FaultInjector, parse_fault_spec
from raftkv.transport.hashicorp_protocol.transport import HashicorpTransport
from raftkv.transport.options import TransportOptions


def conf_entry(index: int, *servers: Server) -> Entry:
    return Entry(index, 1, EntryType.CONFIGURATION, Configuration(servers).encode())


async def pair(follower_answers):
    got_a: list = []
    a = HashicorpTransport("a", "127.0.0.1", 0, lambda f, m: got_a.append((f, m)))
    b = None

    def on_b(from_id, message):
        answer = follower_answers(message)
        if answer is not None:
            b.send(from_id, "ignored:1", answer)

    b = HashicorpTransport("b", "127.0.0.1", 0, on_b)
    await a.start()
    await b.start()
    return a, b, got_a


async def wait_for(pred, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_pipelined_append_entries_are_answered_in_order_and_completed():
    async def main():
        seen = []

        def follower(message):
            seen.append(message)
            if isinstance(message, AppendEntries):
                last = message.prev_log_index + len(message.entries)
                return AppendEntriesResponse(message.term, True, last, message.prev_log_index,
                                             match_index=last, heartbeat=message.heartbeat)
            if isinstance(message, RequestVote):
                return RequestVoteResponse(message.term, True)
            return None

        a, b, got = await pair(follower)
        try:
            conf = conf_entry(1, Server("a", a.address), Server("b", b.address))
            a.send("b", b.address, AppendEntries(1, "a", a.address, 0, 0, (conf,), 0))
            for i in range(2, 6):
                a.send("b", b.address, AppendEntries(1, "a", a.address, i - 1, 1, (Entry(i, 1, data=b"x"),), 1))
            a.send("b", b.address, AppendEntries(1, "a", a.address, 0, 0, (), 3, heartbeat=True, read_seq=7))
            a.send("b", b.address, RequestVote(2, "a", a.address, 5, 1, pre_vote=True))  # never sent
            a.send("b", b.address, RequestVote(2, "a", a.address, 5, 1))
            await wait_for(lambda: len(got) == 7)
            appends = [m for _, m in got if isinstance(m, AppendEntriesResponse) and not m.heartbeat]
            assert [m.match_index for m in appends] == [1, 2, 3, 4, 5]
            hb = [m for _, m in got if isinstance(m, AppendEntriesResponse) and m.heartbeat]
            assert hb == [AppendEntriesResponse(1, True, 0, 0, heartbeat=True, read_seq=7)]
            assert [m for _, m in got if isinstance(m, RequestVoteResponse)] == [RequestVoteResponse(2, True)]
            assert {f for f, _ in got} == {"b"}
            # b learned a's id from the configuration entry
            assert all(m.leader_id == "a" for m in seen if isinstance(m, AppendEntries))
            assert [m.candidate_id for m in seen if isinstance(m, RequestVote)] == ["a"]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_garbage_closes_only_that_connection():
    async def main():
        a, b, got = await pair(lambda m: AppendEntriesResponse(m.term, True, 0, 0, heartbeat=True))
        try:
            host, port = b.address.split(":")
            r, w = await asyncio.open_connection(host, int(port))
            w.write(b"\x09garbage")
            assert await asyncio.wait_for(r.read(), 5) == b""
            a.send("b", b.address, AppendEntries(1, "a", a.address, 0, 0, (), 0, heartbeat=True))
            await wait_for(lambda: len(got) == 1)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def _hostile(port: int, data: bytes) -> bytes:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return s.recv(1024)
        except OSError:
            return b""


def test_headers_claiming_millions_are_refused_and_the_connection_closed():
    import struct

    async def main():
        lines = []
        b = HashicorpTransport("b", "127.0.0.1", 0, lambda f, m: None,
                               TransportOptions(max_connections=2, log_interval=60.0),
                               log=lambda *line: lines.append(line))
        await b.start()
        try:
            port = int(b.address.rsplit(":", 1)[1])
            rpc_append = b"\x00"
            for payload, fragment in [
                (rpc_append + b"\xdf" + struct.pack(">I", 5_000_000) + b"\x80" * 1000, "exceeds max_map_len(64)"),
                (rpc_append + b"\x81\xa7Entries\xdd" + struct.pack(">I", 5_000_000) + b"\x90" * 1000,
                 "exceeds max_array_len(1024)"),
            ]:
                assert await asyncio.to_thread(_hostile, port, payload) == b""
                await wait_for(lambda fragment=fragment: any(fragment in str(line) for line in lines))
            # a flood beyond max_connections is closed at once, with one line
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await wait_for(lambda: len(b.acceptor.connections) == 2)
            for _ in range(3):
                assert await asyncio.to_thread(_hostile, port, b"") == b""
            assert b.refused_connections == 3
            warns = [line for line in lines if line[2] == "too many connections, closing new ones"]
            assert len(warns) == 1 and warns[0][0] == "WARN" and dict(warns[0][3])["limit"] == 2
            for _, writer in held:
                writer.close()
        finally:
            await b.close()

    asyncio.run(main())


# --- fault injection ----------------------------------------------------------------

def heartbeat(a: HashicorpTransport, i: int) -> AppendEntries:
    """The i-th heartbeat, told apart by its term (read_seq is not on this wire)."""
    return AppendEntries(i, "a", a.address, 0, 0, (), 0, heartbeat=True)


async def faulty_pair(a_faults=None, b_faults=None, **a_callbacks):
    """a and b with their fault injectors; b answers every heartbeat and
    records what its core got, a records the answers."""
    got_a, seen_b = [], []
    a = HashicorpTransport("a", "127.0.0.1", 0, lambda f, m: got_a.append((f, m)),
                           TransportOptions(faults=a_faults, io_timeout=0.5), **a_callbacks)
    b = None

    def on_b(from_id, message):
        seen_b.append((from_id, message))
        if isinstance(message, AppendEntries):
            b.send(from_id, a.address, AppendEntriesResponse(message.term, True, 0, message.prev_log_index,
                                                             heartbeat=message.heartbeat))

    b = HashicorpTransport("b", "127.0.0.1", 0, on_b, TransportOptions(faults=b_faults, io_timeout=0.5))
    await a.start()
    await b.start()
    a.learn("b", b.address)
    b.learn("a", a.address)
    return a, b, got_a, seen_b


def test_fault_rules_drop_and_delay_what_is_sent():
    async def main():
        faults = FaultInjector()
        a, b, got, seen = await faulty_pair(a_faults=faults)
        loop = asyncio.get_running_loop()
        try:
            faults.add(parse_fault_spec({"drop": ["b"], "direction": "out"}))
            for i in range(5):
                a.send("b", b.address, heartbeat(a, i))
            assert faults.dropped == {"in": 0, "out": 5}
            await asyncio.sleep(0.3)
            assert seen == [] and got == []
            faults.clear()
            faults.add(parse_fault_spec({"delay_ms": 200, "peers": ["b"], "direction": "out"}))
            start = loop.time()
            for i in range(5, 10):
                a.send("b", b.address, heartbeat(a, i))
            await wait_for(lambda: len(got) == 5)
            assert loop.time() - start >= 0.19
            assert [m.term for _, m in seen] == [m.term for _, m in got] == list(range(5, 10))
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_fault_rules_drop_answers_and_requests_received():
    async def main():
        a_faults, b_faults = FaultInjector(), FaultInjector()
        a, b, got, seen = await faulty_pair(a_faults, b_faults)
        try:
            # answers from b dropped at a: b's core hears every request
            a_faults.add(parse_fault_spec({"drop": ["b"], "direction": "in"}))
            for i in range(3):
                a.send("b", b.address, heartbeat(a, i))
            await wait_for(lambda: a_faults.dropped["in"] == 3)
            assert len(seen) == 3 and got == []
            a_faults.clear()
            # requests from a dropped at b: its core hears nothing, the
            # connection goes quiet until a gives up on it and redials
            b_faults.add(parse_fault_spec({"drop": ["a"], "direction": "in"}))
            a.send("b", b.address, heartbeat(a, 3))
            await wait_for(lambda: b_faults.dropped["in"] == 1)
            await asyncio.sleep(0.3)
            assert len(seen) == 3 and got == []
            b_faults.clear()
            i = 4
            while not got:  # a leader heartbeating every 50ms
                a.send("b", b.address, heartbeat(a, i))
                i += 1
                await asyncio.sleep(0.05)
                assert i < 100
            terms = [m.term for _, m in seen]
            assert terms[:3] == [0, 1, 2] and 3 not in terms and terms[3:] == sorted(terms[3:])
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_dropped_snapshot_is_reported_failed():
    async def main():
        faults, failed = FaultInjector(), []
        a, b, _, seen = await faulty_pair(faults, on_snapshot_failed=failed.append)
        try:
            faults.add(parse_fault_spec({"drop": ["b"]}))
            conf = Configuration((Server("a", a.address), Server("b", b.address)))
            a.send("b", b.address, InstallSnapshot(1, "a", a.address, SnapshotMeta(5, 1, conf, 5, "1-5-x", 3)))
            await wait_for(lambda: failed == ["b"])
            assert seen == []
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
