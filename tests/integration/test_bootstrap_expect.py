"""RAFT_BOOTSTRAP_EXPECT: servers started in any order find each other at
their seeds and form exactly one cluster of N voters; a full restart brings
the same cluster back; a member restarted on new ports with its volume is
moved to its new address by identity (docs/disks.md, "A cluster forming
itself" and "Rejoin by identity")."""

from __future__ import annotations

import threading

from cluster import Cluster, free_port, wait_until

IDS = ["n1", "n2", "n3"]


def expecting(cluster: Cluster, ids=IDS, expect: int = 3):
    """Nodes set up (not started) to form by bootstrap-expect, every one
    listing all of them as seeds."""
    nodes = [cluster.add(i, start=False) for i in ids]
    seeds = ",".join(f"http://{n.http_addr}" for n in nodes)
    for n in nodes:
        n.join = seeds
        n.env["RAFT_BOOTSTRAP_EXPECT"] = str(expect)
    return nodes


def one_cluster(nodes, key: str, value: str) -> dict:
    """Every node agrees on the leader and on one configuration of all of
    them as voters, and a write through the leader is readable on each."""
    ids = sorted(n.id for n in nodes)

    def agreed():
        statuses = [n.status() for n in nodes]
        leaders = {(s["leader"] or {}).get("id") for s in statuses}
        confs = {tuple(sorted((c["id"], c["address"], c["suffrage"]) for c in s["latest_configuration"]))
                 for s in statuses}
        if len(leaders) != 1 or None in leaders or len(confs) != 1:
            return None
        conf = next(iter(confs))
        if [c[0] for c in conf] != ids or any(c[2] != "Voter" for c in conf):
            return None
        return statuses
    statuses = wait_until(agreed, 20, what=f"{ids} to agree on one leader and configuration")
    leader = next(n for n in nodes if n.id == statuses[0]["leader"]["id"])
    leader.set(key, value)
    for n in nodes:
        wait_until(lambda: n.value(key, stale=True) == value, 10, what=f"{key} on {n.id}")
    return {s["id"]: s for s in statuses}


def test_started_at_once_then_all_restarted(cluster):
    nodes = expecting(cluster)
    barrier = threading.Barrier(len(nodes))

    def go(n):
        barrier.wait()
        n.start()
    threads = [threading.Thread(target=go, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = one_cluster(nodes, "k", "v1")
    founders = [n.id for n in nodes if "forming the cluster" in n.log()]
    assert founders, "no node logged that it formed the cluster"
    volumes = {c["id"]: c.get("volume") for c in before["n1"]["latest_configuration"]}
    assert volumes == {i: before[i]["volume_id"] for i in IDS}, "founders record every voter's volume"

    for n in nodes:
        n.stop()
    for n in nodes:
        n.start()
    after = one_cluster(nodes, "k", "v2")
    for n in nodes:
        assert "not joining: node has existing state" in n.log()
        assert n.log().count("forming the cluster") == (1 if n.id in founders else 0)
        assert after[n.id]["volume_id"] == before[n.id]["volume_id"]
    assert nodes[0].value("k") == "v2"


def test_started_one_by_one_and_a_late_server_joins(cluster):
    n1, n2, n3, n4 = expecting(cluster, IDS + ["n4"])
    # n4 is the late server: not a seed of the others, and with them as its seeds
    seeds = ",".join(f"http://{n.http_addr}" for n in (n1, n2, n3))
    for n in (n1, n2, n3, n4):
        n.join = seeds
    n1.start()
    n1.wait_for_log("1 of 3 servers found")
    n2.start()
    n2.wait_for_log("2 of 3 servers found")
    assert not n1.status()["latest_configuration"], "n1 formed a cluster with fewer than 3 servers"
    n3.start()
    one_cluster([n1, n2, n3], "a", "1")

    n4.start()
    n4.wait_for_log("not forming a cluster: joining the existing one")
    cluster.wait_voters(["n1", "n2", "n3", "n4"])
    one_cluster([n1, n2, n3, n4], "b", "2")
    assert "forming the cluster" not in n4.log()


def test_rejoin_on_a_new_address(cluster):
    nodes = expecting(cluster)
    for n in nodes:
        n.start()
    one_cluster(nodes, "before", "1")
    n3 = nodes[2]
    old = n3.raft_addr
    # n3's own copy of the registry knows where the others serve HTTP
    wait_until(lambda: all(p["http"] for p in n3.get("/peers", local="true").json()), 10,
               what="every member's HTTP address in n3's registry")
    n3.stop()
    n3.http_port, n3.raft_port = free_port(), free_port()
    # no seeds either: it finds the others through the HTTP addresses its
    # own copy of the registry holds
    n3.join = None
    n3.env.pop("RAFT_BOOTSTRAP_EXPECT")
    n3.start()
    n3.wait_for_log("listens at another address than the cluster knows it by")
    leader = cluster.leader(exclude=("n3",))
    leader.wait_for_log(f"server moved: updating its address in the configuration: id=n3 old-address={old} "
                        f"new-address={n3.raft_addr}")
    statuses = one_cluster(nodes, "after", "2")
    assert {c["id"]: c["address"] for c in statuses["n1"]["latest_configuration"]}["n3"] == n3.raft_addr
    n3.wait_for_log("the cluster has this node's new address")
    # the registry follows: the leader answers n3's new HTTP address
    wait_until(lambda: {p["id"]: p["http"] for p in leader.get("/peers").json()}["n3"] == n3.http_addr, 10,
               what="n3's new HTTP address in the registry")


def test_rejoin_refused_for_another_volume(cluster):
    nodes = expecting(cluster)
    for n in nodes:
        n.start()
    statuses = one_cluster(nodes, "k", "v")
    leader = next(n for n in nodes if n.id == statuses["n1"]["leader"]["id"])
    other = next(n for n in nodes if n is not leader)
    # a caller naming a member with a volume that is not the member's own
    resp = leader.post("/_raftkv/rejoin", nodeId=other.id, raftAddr=f"127.0.0.1:{free_port()}",
                       volume="0123456789abcdef")
    assert resp.status == 409, resp
    assert "another volume" in resp.json()["error"]
    assert resp.status == 409
    conf = {c["id"]: c["address"] for c in leader.status()["latest_configuration"]}
    assert conf[other.id] == other.raft_addr
