"""What a follower answers when it knows who leads but not where that leader
serves HTTP: with raftkv's own protocol the address is on its way (the
leader registers it once its first entry commits); with hashicorp's, a Go
leader never registers one, and the answer says so instead of "not known
yet" for ever."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from raftkv.http.api.context import Call
from raftkv.http.api.forward import on_leader


class _Node:
    """A follower that knows its leader's id and Raft address only."""

    id = "n1"
    is_leader = False
    leader_id = "node0"
    leader_address = "127.0.0.1:19600"

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def wait_state_change(self, timeout: float) -> None:
        await asyncio.sleep(timeout)


def _ctx(protocol: str) -> SimpleNamespace:
    node = _Node()
    registry = SimpleNamespace(
        leader_http=lambda: None,
        leader=lambda: {"id": node.leader_id, "address": node.leader_address, "http": None})
    # apply_timeout caps the wait for the leader's address: 50 ms keeps this quick
    settings = SimpleNamespace(protocol=protocol, apply_timeout=50, heartbeat_timeout=1000,
                               election_timeout=1000)
    return SimpleNamespace(node=node, id=node.id, settings=settings, registry=registry)


def _call(method: str, path: str) -> Call:
    return Call(method, path, {}, {}, "127.0.0.1")


async def _never() -> None:
    raise AssertionError("a follower must not run the request itself")


@pytest.mark.parametrize("write, path, what", [
    (True, "/set?key=k&value=v", "send writes to it directly"),
    (False, "/get?key=k", "send linearizable reads (or read here with stale=true) to it directly"),
])
async def test_a_go_leader_is_named_as_one(write, path, what):
    reply = await on_leader(_ctx("hashicorp"), _call("GET", path), _never, write=write)
    body = json.loads(reply.body)
    assert reply.status == 503
    assert body["error"] == ("the leader node0 is a hashicorp/raft node whose HTTP address raftkv "
                             f"cannot learn; {what}")
    assert body["outcome_unknown"] is False
    assert body["leader"] == {"id": "node0", "address": "127.0.0.1:19600", "http": None}


async def test_a_raftkv_leader_is_only_not_known_yet():
    reply = await on_leader(_ctx("raftkv"), _call("GET", "/set?key=k&value=v"), _never, write=True)
    assert reply.status == 503
    assert json.loads(reply.body)["error"] == "the HTTP address of leader node0 is not known yet"
