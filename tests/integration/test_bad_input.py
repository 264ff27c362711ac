"""Bad input gets its documented answer (never a 500), and the node keeps
serving: malformed HTTP parameters and bodies, oversized values, and garbage
on the Raft port."""

from __future__ import annotations

import os
import contextlib
import socket

import pytest

from raftkv.raft.messages import AppendEntries, Entry
from raftkv.transport.codec import encode, hello

from cluster import wait_until

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def node(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    return n1


def expect(resp, status: int, param: str | None = None) -> dict:
    assert resp.status == status, resp
    body = resp.json()
    assert "error" in body, body
    if param is not None:
        assert body.get("param") == param, body
    return body


def test_bad_http_parameters(node):
    n = node
    expect(n.get("/set", value="v"), 400, "key")
    expect(n.get("/set", key="", value="v"), 400, "key")
    expect(n.get("/set", key="k"), 400, "value")
    expect(n.get("/get"), 400, "key")
    expect(n.get("/remove"), 400, "key")
    expect(n.get("/get", key="k", stale="perhaps"), 400, "stale")
    expect(n.get("/set", key="\x00raftkv/http/n1", value="x"), 400, "key")
    expect(n.get("/get", key="absent"), 404)

    expect(n.get("/join"), 400, "nodeId")
    expect(n.get("/join", nodeId="", raftPort="9001"), 400, "nodeId")
    expect(n.get("/join", nodeId="bad id!", raftPort="9001"), 400, "nodeId")
    expect(n.get("/join", nodeId="n2"), 400, "raftPort")
    expect(n.get("/join", nodeId="n2", raftPort="abc"), 400, "raftPort")
    expect(n.get("/join", nodeId="n2", raftPort="70000"), 400, "raftPort")
    expect(n.get("/join", nodeId="n2", raftAddr="no-port"), 400, "raftAddr")
    expect(n.request("POST", "/join", body=b"{not json", headers={"Content-Type": "application/json"}),
           400, "body")
    expect(n.request("POST", "/join", json_body={"addr": "127.0.0.1:1"}), 400, "id")
    expect(n.request("POST", "/join", json_body=["n2"]), 400, "body")

    expect(n.request("POST", "/key", body=b"nope", headers={"Content-Type": "application/json"}), 400, "body")
    expect(n.request("POST", "/key", json_body={"a": 1}), 400, "a")
    expect(n.request("POST", "/key", json_body={}), 400, "body")
    expect(n.request("POST", "/key"), 400, "body")
    expect(n.request("POST", "/remove-peer"), 400, "nodeId")
    expect(n.request("POST", "/remove-peer", {"nodeId": "ghost"}), 404, "nodeId")
    expect(n.request("POST", "/transfer-leadership", {"to": "n1"}), 400, "to")
    expect(n.get("/no/such/route"), 404)
    expect(n.request("DELETE", "/status"), 405)

    # values and bodies over the 1 MiB limit: 413, whichever way they come
    big = "x" * (2 * MIB)
    expect(n.get("/set", key="big", value=big), 413, "value")
    expect(n.request("POST", "/set", {"key": "big"}, body=big.encode(),
                     headers={"Content-Type": "text/plain"}), 413)
    expect(n.request("POST", "/key", json_body={"big": big}), 413)
    expect(n.request("POST", "/set", body=f"key=big&value={big}".encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"}), 413)
    # a request line too long for even a value at the limit: still a JSON 413
    expect(n.get("/set", key="huge", value="x" * (4 * MIB)), 413, "request")
    # just under the limit is fine
    ok = "y" * (MIB - 100)
    assert n.get("/set", key="large", value=ok).status == 200
    assert n.value("large") == ok

    # other ways to write work too
    assert n.request("POST", "/set", json_body={"key": "j", "value": "son"}).status == 200
    assert n.request("POST", "/set", body=b"key=f&value=orm",
                     headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    assert n.request("POST", "/set", {"key": "raw"}, body="bödy".encode(),
                     headers={"Content-Type": "text/plain"}).status == 200
    assert n.request("POST", "/set", {"key": "doc"}, body=b'{"x": 1}',
                     headers={"Content-Type": "text/plain"}).status == 200
    assert (n.value("j"), n.value("f"), n.value("raw")) == ("son", "orm", "bödy")
    assert n.value("doc") == '{"x": 1}'

    # after all that the node still serves, and never answered 500
    assert n.set("still", "alive")["served_by"] == "n1"
    assert "internal error" not in n.log()
    assert "Traceback" not in n.log()


def _send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):  # the node may reset the connection
            s.recv(1)


def test_garbage_on_the_raft_port(cluster, node):
    n2 = cluster.add("n2").wait_ready()
    assert node.get("/join", nodeId="n2", raftPort=str(n2.raft_port)).status == 200
    cluster.wait_voters(["n1", "n2"])
    for target in (node, n2):
        _send_raw(target.raft_port, os.urandom(4096))
        _send_raw(target.raft_port, b"\xff\xff\xff\xff" + os.urandom(64))   # absurd frame length
        frame = encode(AppendEntries(1, "evil", "127.0.0.1:1", 0, 0, (Entry(1, 1, data=b"x" * 100),), 0))
        _send_raw(target.raft_port, encode(hello("evil", "127.0.0.1:1")) + frame[:len(frame) // 2])
        target.wait_for_log("[ERROR] raft.net: failed to decode incoming command: error=")
    # the cluster keeps serving
    r = n2.set("after-garbage", "ok")
    assert r["served_by"] == "n1"
    assert n2.value("after-garbage") == "ok"
    assert node.is_leader() and node.status()["term"] == 2
