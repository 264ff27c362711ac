"""A voter that loses its disk and comes back empty under its old name (what
``CLEAN=1 scripts/startnN.sh`` does to a member) must not help elect a leader
that lacks the writes it had acknowledged. docs/disks.md has the design."""

from __future__ import annotations

import shutil

import pytest
from cluster import wait_until

pytestmark = pytest.mark.integration


def role(node) -> str:
    return node.status()["state"]


def test_a_wiped_voter_cannot_elect_a_stale_leader(cluster):
    leader = cluster.form(3)
    a, b = cluster["n3"], cluster["n2"]  # a falls behind; b loses its disk
    a.pause()
    for i in range(200):
        leader.set(f"k{i}", str(i))  # each acknowledged: on the leader and b

    b.kill()
    shutil.rmtree(b.volume)
    b.start().wait_ready()
    leader.kill()
    a.resume()

    # a campaigns with the only other live voter: b, empty, refuses
    b.wait_for_log("request since", timeout=30)
    assert "rejecting pre-vote request since" in b.log() or "rejecting vote request since" in b.log()
    assert role(a) != "Leader" and role(b) != "Leader"

    # the old leader comes back with the writes and leads again
    leader.start().wait_ready()
    new_leader = cluster.leader(timeout=30)
    assert new_leader.id == "n1", "only n1 holds every acknowledged write"
    assert [new_leader.value(f"k{i}") for i in range(200)] == [str(i) for i in range(200)]

    # b is demoted, caught up and promoted again, on its new volume
    cluster.wait_voters(["n1", "n2", "n3"], timeout=60)
    leader_log = new_leader.log()
    assert "peer's storage was lost" in leader_log
    assert "re-admitting a voter whose storage was lost" in leader_log
    commit = new_leader.status()["commit_index"]
    cluster.wait_applied(commit, [a, b], timeout=30)
    assert [b.value(f"k{i}", stale=True) for i in range(200)] == [str(i) for i in range(200)]
    assert b.status()["amnesia_guard"] is None


def test_clean_start_of_a_member_rejoins_it_as_a_new_server(cluster):
    leader = cluster.form(3)
    for i in range(30):
        leader.set(f"k{i}", str(i))
    n2 = cluster["n2"]
    old_volume = n2.status()["volume_id"]
    n2.kill()
    shutil.rmtree(n2.volume)
    n2.start().wait_ready()
    assert n2.status()["volume_id"] != old_volume

    leader.wait_for_log("re-admitting a voter whose storage was lost", timeout=60)
    cluster.wait_voters(["n1", "n2", "n3"], timeout=60)
    leader.set("after", "yes")
    cluster.wait_applied(leader.status()["commit_index"], [n2], timeout=30)
    assert n2.value("k7", stale=True) == "7" and n2.value("after", stale=True) == "yes"


def test_clean_start_of_the_bootstrap_node_joins_the_cluster_it_belonged_to(cluster):
    """n1 bootstraps when its volume is empty; wiped while n2 leads, it must
    not start a cluster of its own."""
    n1 = cluster.form(3)
    n1.set("before", "1")
    n1.kill()
    survivor = cluster.leader(timeout=30, exclude=("n1",))
    survivor.set("while-n1-was-down", "2")
    shutil.rmtree(n1.volume)
    del n1.env["RAFT_BOOTSTRAP_WAIT"]  # the default: long enough for a leader's backed-off redial
    n1.start().wait_ready()

    n1.wait_for_log("not bootstrapping: an existing cluster has this node as a member", timeout=30)
    cluster.wait_voters(["n1", "n2", "n3"], timeout=60)
    leader = cluster.leader(timeout=30)
    cluster.wait_applied(leader.status()["commit_index"], [n1], timeout=30)
    assert n1.value("before", stale=True) == "1" and n1.value("while-n1-was-down", stale=True) == "2"
    assert "entering leader state" not in n1.log().split("not bootstrapping")[0].split("new volume identity")[-1]


def test_a_follower_that_lost_its_last_entries_is_repaired_in_a_quiet_cluster(cluster):
    """Its disk lost the end of its log (a torn tail cut at the next start)
    although it had acknowledged those entries. The cluster then only sends
    heartbeats; their answers must make the leader probe again."""
    leader = cluster.form(3)
    for i in range(100):
        leader.set(f"k{i}", "x" * 200)
    commit = leader.status()["commit_index"]
    n3 = cluster["n3"]
    cluster.wait_applied(commit, [n3])
    n3.kill()
    segment = max((n3.volume / "log").glob("*.seg"))
    size = segment.stat().st_size
    with open(segment, "r+b") as f:
        f.truncate(size - 20 * 230 - 7)  # some twenty entries and a torn record
    n3.start().wait_ready()
    n3.wait_for_log("log store: truncated torn tail")

    # no write from here on: heartbeats alone must bring n3 back
    wait_until(lambda: n3.status()["applied_index"] >= commit, 30, what="n3 to be repaired without a write")
    assert "peer lost acknowledged log entries, replicating again" in leader.log()
    assert n3.value("k99", stale=True) == "x" * 200
    assert leader.status()["commit_index"] == commit, "a write happened after all"
