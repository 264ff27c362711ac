"""Crashes: kill -9 the leader under load, a new leader takes over within a
few seconds, every acknowledged write survives, and the killed node comes
back with its volume and catches up."""

from __future__ import annotations

import time

import pytest

from cluster import Writer, wait_until

pytestmark = pytest.mark.integration


def test_kill_leader_elects_new_one_and_keeps_acked_writes(cluster):
    n1 = cluster.form(3)
    for i in range(20):
        n1.set(f"before{i}", str(i))

    # keep writing through a follower while the leader dies
    writer = Writer(cluster["n2"], "during")
    writer.start()
    wait_until(lambda: len(writer.acked) >= 20, what="writes through the follower")

    t0 = time.monotonic()
    assert n1.kill() == -9
    new = cluster.leader(timeout=10)
    elapsed = time.monotonic() - t0
    assert new.id in ("n2", "n3")
    assert elapsed < 5, f"new leader after {elapsed:.2f}s"
    acked_at_kill = len(writer.acked)
    wait_until(lambda: len(writer.acked) >= acked_at_kill + 20, what="writes after the failover")
    writer.stop_flag.set()
    writer.join(30)
    assert not writer.unexpected, writer.unexpected
    print(f"new leader {new.id} {elapsed:.2f}s after kill -9; {len(writer.acked)} writes acked, "
          f"{len(writer.failures)} refused during the failover")

    # every acknowledged write is there, read linearizably via the new leader
    for i in range(20):
        assert new.value(f"before{i}") == str(i)
    for key, value in writer.acked.items():
        assert new.value(key) == value, key
    new.set("while-down", "yes")

    # the killed node restarts from its volume and catches up as a follower
    n1.start().wait_ready()
    commit = new.status()["commit_index"]
    wait_until(lambda: n1.status()["applied_index"] >= commit, timeout=15, what="n1 to catch up")
    st = n1.status()
    assert st["state"] == "Follower" and st["leader"]["id"] == new.id
    assert n1.value("while-down", stale=True) == "yes"
    for key, value in writer.acked.items():
        assert n1.value(key, stale=True) == value, key
    # and it rejoined with its state: no RAFT_JOIN, no bootstrap of a new cluster
    assert st["term"] >= new.status()["term"] - 1
    assert "initial configuration: index=0" not in n1.log().split("shutting down")[-1].split(
        "creating Raft")[-1]


def test_follower_crash_and_restart_catches_up(cluster):
    n1 = cluster.form(3)
    n3 = cluster["n3"]
    n3.kill()
    for i in range(50):
        n1.set(f"k{i}", str(i))  # the remaining quorum keeps committing
    n3.start().wait_ready()
    commit = n1.status()["commit_index"]
    wait_until(lambda: n3.status()["applied_index"] >= commit, what="n3 to catch up")
    assert n3.value("k49", stale=True) == "49"
