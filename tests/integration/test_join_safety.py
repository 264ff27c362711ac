"""A join never moves a member by accident: repeating an id with another
address is refused (409, saying how to move it on purpose), a host guessed
from the caller's IP never replaces a known address, ``replace=true`` moves
it explicitly; and ``/peers`` on the leader stops calling a member healthy
soon after the leader can no longer reach it."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import pytest

from cluster import free_port, wait_until

pytestmark = pytest.mark.integration


def configured(node, node_id: str) -> dict | None:
    conf = node.status()["latest_configuration"]
    return next((s for s in conf if s["id"] == node_id), None)


def join_from(source_ip: str, node, **params) -> tuple[int, dict]:
    """A /join sent from another loopback address, as a caller behind a NAT
    or a Docker gateway would be seen."""
    conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=20, source_address=(source_ip, 0))
    try:
        conn.request("GET", "/join?" + urllib.parse.urlencode(params))
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def peer_row(node, node_id: str) -> dict:
    return next(p for p in node.get("/peers").json() if p["id"] == node_id)


def test_join_refuses_to_move_a_member_and_replace_moves_it(cluster):
    n1 = cluster.form(3)
    n2 = cluster["n2"]
    before = configured(n1, "n2")
    # a voter is listed with the volume it was admitted with (docs/disks.md)
    assert before == {"id": "n2", "address": n2.raft_addr, "suffrage": "Voter",
                      "volume": n2.status()["volume_id"]}
    conf_index = n1.status()["latest_configuration_index"]
    elsewhere = f"127.0.0.1:{free_port()}"

    # the same id at another address: 409, n2 stays where it is
    resp = n1.get("/join", nodeId="n2", raftAddr=elsewhere)
    assert resp.status == 409, resp
    error = resp.json()["error"]
    assert "n2" in error and n2.raft_addr in error and elsewhere in error
    assert "/remove-peer?nodeId=n2" in error and "replace=true" in error
    # ... also when sent to a follower (forwarded to the leader)
    resp = cluster["n3"].request("POST", "/join", json_body={"id": "n2", "addr": elsewhere})
    assert resp.status == 409 and resp.json()["served_by"] == "n1", resp
    assert configured(n1, "n2") == before
    assert n1.status()["latest_configuration_index"] == conf_index

    # a host guessed from the caller never replaces a known address, even with replace=true
    for extra in ({}, {"replace": "true"}):
        status, body = join_from("127.0.0.2", n1, nodeId="n2", raftPort=str(n2.raft_port), **extra)
        assert status == 409, body
        assert "guessed" in body["error"] and f"127.0.0.2:{n2.raft_port}" in body["error"], body
    # the guess that matches the member is still the idempotent join of the seed demo
    resp = n1.get("/join", nodeId="n2", raftPort=str(n2.raft_port))
    assert resp.status == 200 and resp.json()["changed"] is False, resp
    assert configured(n1, "n2") == before
    assert n1.status()["latest_configuration_index"] == conf_index
    assert "replacing server" not in n1.log()

    # the operator moves n2 on purpose while it is down: a join with
    # replace=true removes the old entry and adds the new one, and n2
    # restarts on the new Raft port (a member that restarts at a new address
    # first moves itself by its volume's identity: test_bootstrap_expect.py)
    n2.stop()
    n2.raft_port = free_port()
    resp = n1.get("/join", nodeId="n2", raftAddr=n2.raft_addr, replace="true")
    assert resp.status == 200, resp
    n2.start().wait_ready()
    body = resp.json()
    assert (body["address"], body["replaced"], body["changed"]) == (n2.raft_addr, before["address"], True)
    n1.wait_for_log(f"[INFO]  http: replacing server: id=n2 address={n2.raft_addr} "
                    f"old-address={before['address']}")
    assert "command=RemoveServer server-id=n2" in n1.log()
    cluster.wait_voters(["n1", "n2", "n3"])
    assert configured(n1, "n2") == {"id": "n2", "address": n2.raft_addr, "suffrage": "Voter",
                                    "volume": n2.status()["volume_id"]}
    index = n1.set("after-move", "yes")["index"]
    wait_until(lambda: n2.status()["applied_index"] >= index, what="n2 to apply at its new address")
    assert n2.value("after-move", stale=True) == "yes"

    # moving the leader itself is refused: it would remove the node serving the request
    resp = n1.get("/join", nodeId="n1", raftAddr=elsewhere, replace="true")
    assert resp.status == 409 and "transfer leadership" in resp.json()["error"], resp


def test_peers_healthy_turns_false_when_the_leader_cannot_reach_a_member(cluster):
    n1 = cluster.form(3)
    wait_until(lambda: peer_row(n1, "n2")["healthy"] is True, what="n2 healthy on the leader")
    cluster["n2"].kill()
    killed_at = time.monotonic()
    # two heartbeat timeouts (300ms here), far below LastContactThreshold (10s)
    wait_until(lambda: peer_row(n1, "n2")["healthy"] is False, timeout=3.0,
               what="n2 unhealthy on the leader")
    print(f"n2 reported unhealthy {time.monotonic() - killed_at:.2f}s after the kill")
    row = peer_row(n1, "n2")
    assert row["last_contact"] >= 600, row
    assert peer_row(n1, "n3")["healthy"] is True and peer_row(n1, "n1")["healthy"] is True
    # back again: healthy again
    cluster["n2"].start().wait_ready()
    wait_until(lambda: peer_row(n1, "n2")["healthy"] is True, what="n2 healthy again")
