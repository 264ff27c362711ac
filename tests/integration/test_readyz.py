"""``GET /readyz`` on real processes: a lone node that is in no cluster, a
follower that lags and one that was frozen, caught-up members (also behind
HTTP workers, which relay the route); and ``RAFT_LEAVE_ON_TERMINATE``: a
leader told to stop hands over and leaves the configuration."""

from __future__ import annotations

import time

import pytest
from cluster import wait_until

pytestmark = pytest.mark.integration


def _readyz(node) -> tuple[int, dict]:
    resp = node.get("/readyz")
    return resp.status, resp.json()


def test_a_lone_node_is_not_ready_until_it_has_a_cluster(cluster):
    lone = cluster.add("solo")
    # HTTP_WORKERS=1: the worker serves the fast routes only and relays /readyz
    founder = cluster.add("n1", bootstrap=True, env={"HTTP_WORKERS": "1"})
    lone.wait_ready()
    status, body = _readyz(lone)
    assert (status, body["ready"], body["reason"], body["leader"]) == (503, False, "no leader", None), body

    founder.wait_ready()
    wait_until(lambda: _readyz(founder)[0] == 200, what="a one-voter cluster's leader to be ready")
    body = _readyz(founder)[1]
    assert body["leader"] == "n1" and body["state"] == "Leader", body
    assert body["applied_index"] >= body["leader_commit_index"] > 0, body


def test_a_lagging_follower_is_not_ready_until_it_caught_up(cluster):
    # The leader sends n2 at most 2 batches of 2 entries per 200ms round trip
    # (RAFT_MAX_APPEND_ENTRIES, the core's two in flight, the delay): while
    # writes go on at full speed through n1 and n3, n2 falls behind, and the
    # appends it does get tell it the leader's commit index.
    cluster.env = {"RAFT_FAULT_INJECTION": "true", "RAFT_MAX_APPEND_ENTRIES": "2"}
    n1 = cluster.form(3)
    n2, n3 = cluster["n2"], cluster["n3"]
    for node in (n1, n2, n3):
        wait_until(lambda node=node: _readyz(node)[0] == 200, what=f"{node.id} to be ready")

    n1.inject(delay_ms=200, peers=["n2"], direction="out")
    last = 0
    for i in range(120):
        last = n1.set(f"k{i}", str(i))["index"]

    def behind():
        # (a stall of the loaded box past the heartbeat timeout says "no contact" instead, for a moment)
        status, body = _readyz(n2)
        assert status == 503 and not body["ready"], body
        return body if body["reason"].startswith("applied ") else None

    body = wait_until(behind, 5, what="n2 to say how far behind it is")
    assert body["reason"] == (f"applied {body['applied_index']} of {body['leader_commit_index']} "
                              "(leader n1's commit index at last contact)"), body
    assert body["applied_index"] < body["leader_commit_index"] <= last, body
    assert _readyz(n3)[0] == 200  # the follower that keeps up

    n1.heal()
    wait_until(lambda: _readyz(n2)[0] == 200, 20, what="n2 to catch up and be ready")
    assert n2.status()["applied_index"] >= last

    # Frozen (SIGSTOP) while the writes go on, n2 still holds the leader and
    # commit index it knew: on waking, it must not call itself ready on them.
    n2.pause()
    try:
        for i in range(20):
            last = n1.set(f"p{i}", str(i))["index"]
    finally:
        n2.resume()
    seen = []
    deadline = time.monotonic() + 20
    while True:
        status, body = _readyz(n2)
        seen.append((status, body.get("reason")))
        if status == 200:
            break
        assert status == 503 and body["reason"], body
        assert time.monotonic() < deadline, seen
    assert body["applied_index"] >= last, (body, seen)


def test_a_leader_leaving_on_terminate_hands_over_and_is_removed(cluster):
    cluster.env = {"RAFT_LEAVE_ON_TERMINATE": "true"}  # the teardown's SIGKILL leaves nothing
    n1 = cluster.form(3)
    n2, n3 = cluster["n2"], cluster["n3"]
    n1.set("before", "1")

    assert n1.stop(timeout=20) == 0
    log = n1.log()
    for line in ("leave on terminate: transferring leadership before leaving",
                 "leave on terminate: leadership transferred",
                 "leave on terminate: removed from the configuration"):
        assert line in log, log[-3000:]

    leader = cluster.leader(exclude=("n1",))
    assert leader in (n2, n3)
    conf = leader.status()["latest_configuration"]
    assert sorted((s["id"], s["suffrage"]) for s in conf) == [("n2", "Voter"), ("n3", "Voter")], conf
    leader.set("after", "2")
    for node in (n2, n3):
        assert node.value("after") == "2" and node.value("before") == "1"
        wait_until(lambda node=node: _readyz(node)[0] == 200, what=f"{node.id} to be ready")
