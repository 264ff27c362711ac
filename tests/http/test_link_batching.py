"""A worker's reads share one read-index request until its frames leave the
worker, never one that was already sent (its read index is taken when the
Raft process receives it). LinkClient over a transport that records what is
written, no Raft process."""

from __future__ import annotations

import asyncio

import msgpack

from raftkv.http.workers.link import READ, LinkClient


class RecordingTransport:
    def __init__(self) -> None:
        self.frames: list = []

    def write(self, data: bytes) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(data)
        self.frames.extend(unpacker)

    def is_closing(self) -> bool:
        return False


def connected_client() -> tuple[LinkClient, RecordingTransport]:
    client = LinkClient()
    transport = RecordingTransport()
    client.attach(transport)
    return client, transport


async def test_reads_before_the_frames_leave_share_one_request():
    client, transport = connected_client()
    first = client.read_index()
    assert client.read_index() is first
    await asyncio.sleep(0)  # the outbox flushes: the request has left
    assert [f[0] for f in transport.frames] == [READ]
    later = client.read_index()
    assert later is not first
    await asyncio.sleep(0)
    assert [f[0] for f in transport.frames] == [READ, READ]
    # answers resolve each request with its own index
    client.received([transport.frames[0][1], True, 7])
    client.received([transport.frames[1][1], True, 9])
    assert await first == 7 and await later == 9


async def test_a_lost_link_fails_the_waiting_reads():
    client, transport = connected_client()
    waiting = client.read_index()
    client.closed = asyncio.get_running_loop().create_future()
    client.lost()
    assert isinstance(waiting.exception(), Exception) and "gone" in str(waiting.exception())
