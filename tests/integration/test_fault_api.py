"""/debug/faults: 403 unless the node runs with fault injection, the
dashboard's request shapes when it does, and /status saying which."""

from __future__ import annotations

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration


def test_fault_routes_are_forbidden_without_the_switch(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    assert n1.status()["fault_injection"] is False
    for method in ("GET", "POST", "DELETE"):
        resp = n1.request(method, "/debug/faults", json_body={"drop": ["n2"]} if method == "POST" else None)
        assert resp.status == 403, resp
        assert "fault injection is disabled" in resp.json()["error"]


def test_fault_routes_with_the_switch(cluster):
    cluster.env["RAFT_FAULT_INJECTION"] = "true"
    leader = cluster.form(3)
    assert leader.status()["fault_injection"] is True
    expect = leader.request("POST", "/debug/faults", json_body={"drop": "n2"})
    assert expect.status == 400 and expect.json()["param"] == "drop"
    assert leader.request("POST", "/debug/faults").status == 400

    # the dashboard's "isolate": drop every peer; the others elect a leader
    body = leader.inject(drop=["n2", "n3"])
    assert body["rules"][0]["drop"] is True and body["rules"][0]["peers"] == ["n2", "n3"]
    new = cluster.leader(exclude=("n1",), timeout=20)
    wait_until(lambda: leader.status()["state"] != "Leader", 20, what="n1 to step down")
    assert leader.request("GET", "/debug/faults").json()["dropped"]["out"] > 0
    # "heal": n1 rejoins as a follower of the new leader
    assert leader.heal()["rules"] == []
    wait_until(lambda: (leader.status()["leader"] or {}).get("id") == new.id, 20, what="n1 to follow")
    new.set("healed", "yes")
    wait_until(lambda: leader.value("healed", stale=True) == "yes", 20, what="n1 to catch up")

    # "delay": slower, still correct; expires on its own
    body = new.inject(delay_ms=50, peers=["n1", "n2", "n3"], duration_s=2)
    assert body["added"][0]["delay_ms"] == 50 and "remaining_s" in body["added"][0]
    new.set("delayed", "yes")
    assert leader.value("delayed") == "yes"
    wait_until(lambda: not new.request("GET", "/debug/faults").json()["rules"], 10, what="the delay to expire")
