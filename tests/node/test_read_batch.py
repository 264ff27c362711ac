"""Linearizable reads that arrive together share one ReadIndex request, and
a read never shares a request the core has already taken (its read index
must be taken after the read arrived). A one-voter node, in-process."""

from __future__ import annotations

import asyncio
import socket

import pytest

from raftkv.config.settings import load_settings
from raftkv.statemachine.commands import encode_set
from raftkv.node.errors import NotLeaderError
from raftkv.node.runtime import Node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def leader(tmp_path):
    settings = load_settings({"RAFT_NODE_ID": "n1", "RAFT_BOOTSTRAP": "true", "RAFT_VOLUME_DIR": str(tmp_path),
                              "HTTP_SERVER_PORT": str(free_port()), "RAFT_SERVER_PORT": str(free_port())})
    node = Node(settings)
    await node.start()
    try:
        async with asyncio.timeout(30):
            while not node.is_leader:
                await node.wait_state_change(0.1)
            await node.read_barrier()  # the first commit of the term is behind us
        yield node
    finally:
        await node.stop()


async def test_reads_arriving_together_share_one_request(leader):
    first = leader.read_barrier_nowait()
    second = leader.read_barrier_nowait()
    assert first is second
    index = await asyncio.wait_for(first, 10)
    assert index >= 1
    third = leader.read_barrier_nowait()
    assert third is not first  # the core already took the first one's request
    assert await asyncio.wait_for(third, 10) >= index


async def test_a_read_after_a_write_is_acknowledged_sees_it(leader):
    index, _ = await asyncio.wait_for(leader.propose_nowait(encode_set("k", "v1")), 10)
    read_index = await asyncio.wait_for(leader.read_barrier_nowait(), 10)
    assert read_index >= index
    assert leader.get_local("k") == "v1"


async def test_a_cancelled_reader_does_not_cancel_the_shared_request(leader):
    waiter = asyncio.ensure_future(leader.read_barrier())
    shared = leader.read_barrier_nowait()
    await asyncio.sleep(0)
    waiter.cancel()
    assert await asyncio.wait_for(shared, 10) >= 1


async def test_a_follower_refuses_at_once(tmp_path):
    settings = load_settings({"RAFT_NODE_ID": "n2", "RAFT_VOLUME_DIR": str(tmp_path),
                              "HTTP_SERVER_PORT": str(free_port()), "RAFT_SERVER_PORT": str(free_port())})
    node = Node(settings)
    await node.start()
    try:
        with pytest.raises(NotLeaderError):
            node.read_barrier_nowait()
        with pytest.raises(NotLeaderError):
            node.propose_nowait(encode_set("k", "v"))
    finally:
        await node.stop()
