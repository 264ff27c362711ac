"""The hashicorp transport between two raftkv nodes: answers travel back on the
request's connection, in order, completed from the request."""

from __future__ import annotations

import asyncio


from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryType, RequestVote,
                                  RequestVoteResponse)
from raftkv.transport.hashicorp import HashicorpTransport


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
