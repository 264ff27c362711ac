"""``/transfer-leadership`` takes GET as ``/join``, ``/set`` and ``/remove``
do, so a browser's address bar or a bare ``curl URL`` works; POST still does."""

from __future__ import annotations

import pytest
from cluster import wait_until

pytestmark = pytest.mark.integration


def test_transfer_leadership_answers_get_and_post(cluster):
    n1 = cluster.form(3)
    n3 = cluster["n3"]

    # a follower forwards the GET to the leader, as it does a POST
    resp = n3.get("/transfer-leadership", to="n2")
    assert resp.status == 200, resp
    assert resp.json() == {"transferred": True, "from": "n1", "to": "n2", "served_by": "n1"}
    wait_until(lambda: cluster.leader().id == "n2", what="n2 to lead")

    # without a target the leader picks a voter
    resp = cluster["n2"].get("/transfer-leadership")
    assert resp.status == 200, resp
    assert resp.json()["from"] == "n2" and resp.json()["to"] is None
    wait_until(lambda: cluster.leader().id != "n2", what="a leader other than n2")

    leader = cluster.leader()
    target = "n1" if leader.id != "n1" else "n3"
    resp = leader.post("/transfer-leadership", to=target)
    assert resp.status == 200 and resp.json()["to"] == target, resp
    wait_until(lambda: cluster.leader().id == target, what=f"{target} to lead")

    # other methods stay refused, as JSON
    resp = n1.request("PUT", "/transfer-leadership")
    assert resp.status == 405 and resp.headers["Content-Type"].startswith("application/json"), resp
    assert "error" in resp.json()
