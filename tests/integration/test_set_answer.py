"""/set answers with what was written -- key, index, size in bytes -- not
with the value: a 500 KB value does not come back in full."""

from __future__ import annotations

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration


def test_set_answers_key_index_and_size_not_the_value(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    big = "v" * (500 * 1024)
    # the raw body is the value (POST through aiohttp)
    resp = n1.request("POST", "/set", {"key": "big"}, body=big.encode(), headers={"Content-Type": "text/plain"})
    assert resp.status == 200, resp
    assert len(resp.body) < 200, len(resp.body)
    answer = resp.json()
    assert answer == {"key": "big", "index": answer["index"], "size": 500 * 1024, "served_by": "n1"}
    assert n1.value("big") == big
    # GET /set on the fast path: the same shape; the size counts UTF-8 bytes
    resp = n1.get("/set", key="k", value="é€")
    assert resp.status == 200, resp
    small = resp.json()
    assert small == {"key": "k", "index": small["index"], "size": 5, "served_by": "n1"}, small
    assert small["index"] > answer["index"]
    # hraftd's POST /key keeps its own answer
    resp = n1.request("POST", "/key", json_body={"a": "1", "b": "2"})
    assert resp.status == 200 and resp.json()["keys"] == 2 and "value" not in resp.json(), resp
