"""Recovery from a lost quorum (Consul's and Vault's peers.json, hashicorp
RecoverCluster): the survivor of a cluster that lost two of three nodes for
good restarts with a peers.json naming only itself, leads, serves every
acknowledged write, and takes two fresh nodes in."""

from __future__ import annotations

import json
import shutil

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration


def test_survivor_recovers_with_peers_json_and_takes_new_nodes(cluster):
    n1 = cluster.form(3)
    acknowledged = {}
    for i in range(40):
        n1.set(f"k{i}", f"v{i}")
        acknowledged[f"k{i}"] = f"v{i}"
    survivor = cluster["n2"]
    # part of the state in a snapshot, the rest in the log: both are kept
    cluster.wait_applied(n1.status()["commit_index"], [survivor])
    assert survivor.request("POST", "/snapshot").status == 200
    for i in range(40, 60):
        n1.set(f"k{i}", f"v{i}")
        acknowledged[f"k{i}"] = f"v{i}"
    cluster.wait_applied(n1.status()["commit_index"], [survivor])

    # two nodes lost for good: no quorum can ever form again
    for lost in ("n1", "n3"):
        cluster[lost].kill()
        shutil.rmtree(cluster[lost].volume)
    survivor.stop()

    peers_file = survivor.volume / "peers.json"
    peers_file.write_text(json.dumps([{"id": "n2", "address": survivor.raft_addr, "non_voter": False}]))
    survivor.start().wait_ready()
    survivor.wait_for_log("[WARN]  raft: found peers.json file, recovering Raft configuration, renamed it")
    assert not peers_file.exists()
    assert (survivor.volume / "peers.json.recovered").exists()

    wait_until(survivor.is_leader, 20, what="the survivor to lead")
    st = survivor.status()
    assert [s["id"] for s in st["latest_configuration"]] == ["n2"]
    for key, value in acknowledged.items():
        assert survivor.value(key) == value, key  # linearizable reads
    survivor.set("after", "recovery")

    # a second restart does not recover again
    survivor.restart().wait_ready()
    wait_until(survivor.is_leader, 20, what="the survivor to lead after a plain restart")
    assert survivor.log().count("found peers.json file") == 1

    # two fresh nodes join and catch up
    for new_id in ("n4", "n5"):
        node = cluster.add(new_id).wait_ready()
        resp = survivor.get("/join", nodeId=node.id, raftPort=str(node.raft_port))
        assert resp.status == 200, resp
    cluster.wait_voters(["n2", "n4", "n5"])
    cluster.wait_applied(survivor.status()["commit_index"], [cluster["n4"], cluster["n5"]])
    for node_id in ("n4", "n5"):
        node = cluster[node_id]
        assert node.value("after", stale=True) == "recovery"
        for key, value in acknowledged.items():
            assert node.value(key, stale=True) == value, (node_id, key)


def _files(root) -> dict:
    """Every file of a volume with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_peers_json_refuses_to_start_and_leaves_the_volume_alone(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, 15, what="n1 to lead")
    n1.set("a", "1")
    n1.stop()
    before = _files(n1.volume)
    peers_file = n1.volume / "peers.json"
    peers_file.write_text(json.dumps([{"id": "n1", "address": n1.raft_addr}, {"id": "n1", "address": "x:1"}]))
    n1.start()
    wait_until(lambda: n1.proc.poll() is not None, 20, what="n1 to refuse to start")
    assert n1.proc.returncode == 1
    assert "failed to start node" in n1.log() and "duplicate id 'n1'" in n1.log()
    assert peers_file.exists()
    assert _files(n1.volume) == {**before, "peers.json": _files(n1.volume)["peers.json"]}

    peers_file.unlink()
    n1.start().wait_ready()
    wait_until(n1.is_leader, 15, what="n1 to lead")
    assert n1.value("a") == "1"
