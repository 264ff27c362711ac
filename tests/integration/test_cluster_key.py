"""RAFT_CLUSTER_KEY: Raft connections authenticate with an HMAC challenge and
admin routes need the key as a bearer token; nodes and clients without it
are refused and logged, and joining through RAFT_JOIN still works."""

from __future__ import annotations

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration

KEY = "s3cret-cluster-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def admin(cluster, method, path, params):
    """An authorised admin request to the current leader, retried while the
    cluster answers 503 (a leader change on a busy machine)."""
    def attempt():
        resp = cluster.leader().request(method, path, params, headers=AUTH)
        assert resp.status != 401, resp
        return resp if resp.status != 503 else None
    return wait_until(attempt, 30, interval=0.2, what=f"{method} {path} {params}")


def test_cluster_key_guards_raft_and_admin_routes(cluster):
    cluster.env.update({"RAFT_CLUSTER_KEY": KEY, "RAFT_FAULT_INJECTION": "true"})
    leader = cluster.form(3, via_env_join=True)    # RAFT_JOIN sends the token
    n2 = cluster["n2"]
    assert n2.set("k", "v")["served_by"] == leader.id     # key-value routes stay open
    assert n2.value("k") == "v"

    # admin routes: no token or a wrong one is 401 and logged; the right one works
    for node in (leader, n2):
        for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"}, {"Authorization": KEY}):
            for method, path in (("GET", "/join?nodeId=x&raftPort=1"), ("POST", "/remove-peer?nodeId=n3"),
                                 ("GET", "/debug/faults"), ("POST", "/snapshot"),
                                 ("POST", "/transfer-leadership"), ("POST", "/_raftkv/register")):
                resp = node.request(method, path, headers=headers)
                assert resp.status == 401, (node.id, method, path, headers, resp)
                assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
    leader.wait_for_log("[WARN]  http: refused admin request: method=GET path=/join")
    assert KEY not in leader.log()
    assert leader.request("GET", "/debug/faults", headers=AUTH).status == 200
    # a follower forwards an authorised admin request to the leader with the token
    resp = n2.request("POST", "/transfer-leadership", headers=AUTH)
    assert resp.status == 200, resp
    new = cluster.leader(exclude=(leader.id,))
    assert new.set("after", "transfer")["served_by"] == new.id

    # a node with the wrong key cannot join through RAFT_JOIN ...
    bad = cluster.add("n4", join=new.http_addr, env={"RAFT_CLUSTER_KEY": "not-the-cluster-key-000000"})
    bad.wait_ready()
    bad.wait_for_log("failed to join cluster, will retry")
    assert "HTTP 401" in bad.log()
    # ... and if an operator adds it anyway, Raft connections to it fail on both ends
    resp = admin(cluster, "GET", "/join", {"nodeId": "n4", "raftPort": str(bad.raft_port)})
    assert resp.status == 200, resp
    bad.wait_for_log("[ERROR] raft.net: refused connection")
    wait_until(lambda: "cluster key" in cluster.leader().log(), what="the leader to report the key mismatch")
    assert bad.status()["applied_index"] == 0 and bad.value("k", stale=True) is None
    # a peer with no key at all gets nothing either
    nokey = cluster.add("n5", env={"RAFT_CLUSTER_KEY": ""}).wait_ready()
    resp = admin(cluster, "GET", "/join", {"nodeId": "n5", "raftPort": str(nokey.raft_port)})
    assert resp.status == 200, resp
    # it never answers the challenge, so the leader never trusts it
    wait_until(lambda: "i/o timeout waiting for the cluster key challenge" in cluster.leader().log(), 30,
               what="the leader to give up on n5's handshake")
    assert nokey.status()["applied_index"] == 0
    assert admin(cluster, "POST", "/remove-peer", {"nodeId": "n4"}).status in (200, 404)
    assert admin(cluster, "POST", "/remove-peer", {"nodeId": "n5"}).status in (200, 404)
    # the real members were never disturbed
    assert cluster["n3"].value("after") == "transfer"
