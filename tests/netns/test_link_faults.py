"""Faults on the network, not in the node: route partitions and the link
proxy's delay and loss, each shown to have the effect it should."""

from __future__ import annotations

import contextlib
import time

import pytest

from raftkv.chaos.netnode import wait_until

pytestmark = pytest.mark.timeout(120)


def _others(c, node_id):
    return [i for i in c.nodes if i != node_id]


def test_isolated_leader_steps_down_majority_elects_and_heal_restores(make_cluster):
    c = make_cluster(3)
    c.form()
    old = c.leader()
    assert old.set("before", "1").status == 200
    c.isolate(old.id)
    new = c.leader(timeout=10, among=_others(c, old.id))
    assert new.id != old.id
    wait_until(lambda: old.state() != "Leader", 10, what=f"isolated {old.id} to step down")
    assert new.set("during", "2").status == 200
    # the minority cannot commit: the write is refused or times out, never acknowledged
    assert old.set("minority", "x", timeout=5).status != 200
    c.heal()
    leader = c.leader(timeout=15)
    wait_until(lambda: old.value("during", stale=True) == "2", 15, what=f"{old.id} to catch up")
    assert leader.value("minority") is None
    assert leader.set("after", "3").status == 200


def test_partition_majority_keeps_serving_minority_does_not(make_cluster):
    c = make_cluster(5)
    c.form()
    leader = c.leader()
    minority = _others(c, leader.id)[:2]
    majority = [i for i in c.nodes if i not in minority]
    c.partition(majority, minority)
    assert c.leader(timeout=5, among=majority).id == leader.id  # nothing moved on the majority side
    assert leader.set("k", "majority").status == 200
    time.sleep(1.0)  # several election timeouts: the minority must still not elect anyone
    assert c.leaders([c[i] for i in minority]) == []
    assert c[minority[0]].set("k", "minority", timeout=4).status != 200
    c.heal()
    for i in minority:
        wait_until(lambda i=i: c[i].value("k", stale=True) == "majority", 15, what=f"{i} to catch up")


def test_bridge_node_keeps_the_cluster_available(make_cluster):
    c = make_cluster(3)
    c.form()
    leader = c.leader()
    a, b = _others(c, leader.id)
    # a and the leader cannot talk; b sees both sides
    c.cut(leader.id, a)
    deadline = time.monotonic() + 4
    acked = 0
    while time.monotonic() < deadline:
        node = c.leader(timeout=10)
        if node.set(f"k{acked}", "v", timeout=5).status == 200:
            acked += 1
    assert acked >= 3, f"only {acked} writes went through with a bridge node"
    c.heal()
    wait_until(lambda: c[a].value(f"k{acked - 1}", stale=True) == "v", 15, what=f"{a} to catch up")


def test_one_way_cut_of_the_leader(make_cluster):
    """The leader's messages reach nobody, while it still hears everyone: the
    others elect a new leader, and the old one steps down on their higher term."""
    c = make_cluster(3)
    c.form()
    old = c.leader()
    for peer in _others(c, old.id):
        c.cut_oneway(old.id, peer)
    new = c.leader(timeout=10, among=_others(c, old.id))
    wait_until(lambda: old.state() != "Leader", 10, what=f"{old.id} to step down")
    assert new.set("k", "v").status == 200
    stats = c.link_stats()[old.id]
    assert all(stats[p]["dropped"] > 0 for p in _others(c, old.id))
    c.heal()
    wait_until(lambda: old.value("k", stale=True) == "v", 15, what=f"{old.id} to catch up")


def test_delay_on_every_link_slows_commits_but_they_happen(make_cluster):
    c = make_cluster(3)
    c.form()
    leader = c.leader()
    started = time.monotonic()
    assert leader.set("fast", "1").status == 200
    fast = time.monotonic() - started
    c.all_links(delay_ms=120)
    started = time.monotonic()
    assert leader.set("slow", "1", timeout=10).status == 200
    slow = time.monotonic() - started
    # an entry goes out and its acknowledgement comes back: two delayed hops
    assert slow >= 0.24, (fast, slow)
    c.heal()


def test_loss_drops_messages_yet_writes_commit(make_cluster):
    c = make_cluster(3, seed=7)
    c.form()
    c.all_links(loss=0.25)
    acked = 0
    deadline = time.monotonic() + 8
    while acked < 5 and time.monotonic() < deadline:
        # a lossy link may cost the leader or one request's answer (the
        # harness asserts both): try again until five writes are acknowledged
        with contextlib.suppress(AssertionError):
            if c.leader(timeout=8).set(f"k{acked}", "v", timeout=5).status == 200:
                acked += 1
    assert acked == 5
    dropped = sum(s["dropped"] for node in c.link_stats().values() for s in node.values())
    assert dropped > 0


def test_total_loss_means_no_leader_can_be_elected(make_cluster):
    c = make_cluster(3)
    c.form()
    old = c.leader()
    c.all_links(loss=1.0)
    wait_until(lambda: not c.leaders(), 10, what="the leader to step down")
    time.sleep(1.5)
    assert c.leaders() == []
    c.heal()
    c.leader(timeout=15)
    assert old.id in c.nodes
