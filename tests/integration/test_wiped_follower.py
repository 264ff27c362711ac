"""A follower whose volume is wiped (or whose log was damaged) and which comes
back under the same id and address must be caught up from scratch. The
leader still remembers how far that follower had acknowledged; it must
believe the follower's answer ("my last index is 0") rather than insist on
its old match index -- which made the two ping-pong rejections forever (tens
of thousands a second) and left the follower empty."""

from __future__ import annotations

import shutil

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration


def test_wiped_follower_is_caught_up_again(cluster):
    cluster.env["LOG_LEVEL"] = "INFO"
    leader = cluster.form(3)
    for i in range(50):
        leader.set(f"k{i}", str(i))
    n3 = cluster["n3"]
    cluster.wait_applied(leader.status()["commit_index"])
    n3.kill()
    shutil.rmtree(n3.volume)
    leader.set("while-wiped", "yes")
    n3.start().wait_ready()
    commit = leader.status()["commit_index"]
    wait_until(lambda: n3.status()["applied_index"] >= commit, 30, what="the wiped n3 to catch up")
    assert n3.value("k7", stale=True) == "7" and n3.value("while-wiped", stale=True) == "yes"
    assert n3.log().count("failed to get previous log") < 50, "rejections ping-ponged"
