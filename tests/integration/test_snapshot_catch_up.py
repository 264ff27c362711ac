"""A follower that took its own snapshot (keeping trailing logs), was down
while the leader compacted past it, and comes back: it must install the
leader's snapshot and keep serving -- not crash on the first append after it
because its log store still held the entries below its own snapshot.
(Found by the snapshot nemesis: "failed to persist, shutting down:
append at index 113, expected 23".)"""

from __future__ import annotations

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration


def test_follower_installs_snapshot_over_its_own_trailing_logs(cluster):
    cluster.env.update({"RAFT_TRAILING_LOGS": "5", "RAFT_SNAPSHOT_THRESHOLD": "100000", "LOG_LEVEL": "INFO"})
    leader = cluster.form(3)
    follower = cluster["n3"]
    for i in range(30):
        leader.set(f"a{i}", str(i))
    cluster.wait_applied(leader.status()["commit_index"])
    assert follower.post("/snapshot").status == 200     # keeps 5 trailing entries below it
    follower.kill()
    for i in range(60):
        leader.set(f"b{i}", str(i))
    # both others compact past the follower's log, so that whichever leads
    # (leadership may move on a loaded machine) must send it a snapshot
    others = [cluster["n1"], cluster["n2"]]
    for node in others:
        assert node.post("/snapshot").status == 200
    follower.start().wait_ready()
    snap = min(node.status()["last_snapshot_index"] for node in others)
    wait_until(lambda: follower.status()["last_snapshot_index"] >= snap, 30,
               what="n3 to install the leader's snapshot")
    leader.set("after", "install")
    commit = leader.status()["commit_index"]
    wait_until(lambda: follower.status()["applied_index"] >= commit, 30, what="n3 to apply new entries")
    assert follower.running, follower.log()[-3000:]
    assert "failed to persist" not in follower.log()
    assert follower.value("after", stale=True) == "install"
    assert follower.value("a7", stale=True) == "7" and follower.value("b59", stale=True) == "59"
    # and it restarts cleanly from what it stored
    follower.stop()
    follower.start().wait_ready()
    wait_until(lambda: follower.status()["applied_index"] >= commit, 30, what="n3 to replay after restart")
    assert follower.value("after", stale=True) == "install"
