"""Read levels on a real 3-node cluster: every level answers the value just
written and names itself, a follower serves linearizable and lease reads
itself (the leader confirms their index) and forwards the rest,
``stale=true`` is ``none``, ``freshness`` refuses what is too old, and bad
levels are a 400 naming the parameter."""

from __future__ import annotations

import pytest
from cluster import wait_until

pytestmark = pytest.mark.integration

LEVELS = ("none", "weak", "linearizable", "lease", "strong")


def test_every_level_reads_what_was_written_and_says_which_it_was(cluster):
    leader = cluster.form(3)
    index = leader.set("k", "v1")["index"]
    cluster.wait_applied(index)
    follower = cluster["n2"] if leader.id != "n2" else cluster["n3"]
    for node in (leader, follower):
        for level in LEVELS:
            resp = node.get("/get", key="k", level=level)
            assert resp.status == 200, (node.id, level, resp)
            body = resp.json()
            assert body["value"] == "v1" and body["level"] == level, (node.id, body)
            # a follower serves none itself, and linearizable and lease reads too once
            # the leader gave it their read index; weak and strong are the leader's
            served = node.id if level in ("none", "linearizable", "lease") else leader.id
            assert body["served_by"] == served, (node.id, level, body)
    # lease reads right after a write see it (read-your-writes), many in a row
    for i in range(20):
        leader.set("k", f"w{i}")
        assert leader.get("/get", key="k", level="lease").json()["value"] == f"w{i}"
    assert "read lease acquired" in leader.log()
    # stale=true is level=none; hraftd's GET /key/K names its level in a header
    assert follower.get("/get", key="k", stale="true").json()["level"] == "none"
    resp = leader.get("/key/k", level="lease")
    assert resp.json() == {"k": "w19"} and resp.headers["X-Raftkv-Read-Level"] == "lease"


def test_freshness_and_bad_levels(cluster):
    leader = cluster.form(3)
    leader.set("k", "v")
    follower = cluster["n2"] if leader.id != "n2" else cluster["n3"]
    cluster.wait_applied(leader.status()["commit_index"], [follower])
    assert follower.get("/get", key="k", level="none", freshness="1m").status == 200
    # alone, the follower hears from no leader any more: a fresh-enough none read is refused
    for node in cluster.running():
        if node is not follower:
            node.kill()
    def silent() -> bool:
        contact = follower.status()["last_contact"]
        return contact is None or contact > 200
    wait_until(silent, 30, what="the follower to go 200 ms without a leader")
    resp = follower.get("/get", key="k", level="none", freshness="100ms")
    assert resp.status == 503 and "freshness" in resp.json()["error"], resp
    assert follower.get("/get", key="k", level="none").json()["value"] == "v"   # without freshness: served
    for params, param in (({"level": "eventual"}, "level"), ({"level": "lease", "freshness": "1s"}, "freshness"),
                          ({"level": "none", "freshness": "soon"}, "freshness")):
        resp = follower.get("/get", key="k", **params)
        assert resp.status == 400 and resp.json().get("param") == param, (params, resp)
