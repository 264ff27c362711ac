"""Snapshots with real processes: a lagging follower brought back by
InstallSnapshot, and backup / restore of the whole store (GET /snapshot,
POST /restore and the ``raftkv snapshot`` commands)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cluster import REPO, wait_until

pytestmark = pytest.mark.integration

SNAP_ENV = {"RAFT_SNAPSHOT_THRESHOLD": "40", "RAFT_SNAPSHOT_INTERVAL": "200ms",
            "RAFT_TRAILING_LOGS": "10"}


def raftkv(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftkv", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_lagging_follower_catches_up_by_snapshot(cluster):
    cluster.env = SNAP_ENV
    n1 = cluster.form(3)
    n3 = cluster["n3"]
    assert n3.stop() == 0
    for i in range(200):
        n1.set(f"k{i}", "x" * 200)
    assert n1.request("POST", "/snapshot").status in (200, 409)
    wait_until(lambda: n1.status()["last_snapshot_index"] >= 200, what="n1 to snapshot")
    n1.wait_for_log("[INFO]  raft: compacting logs: from=")
    # (that whole segment files go back to the disk is tests/storage's
    # test_compaction_returns_disk_space: here the log fits in one segment)
    snapshots = [p for p in (n1.volume / "snapshots").iterdir() if not p.name.endswith(".tmp")]
    assert 1 <= len(snapshots) <= 2, snapshots  # the newest two are kept

    n3.start().wait_ready()
    n1.wait_for_log("[INFO]  raft: installing snapshot on: peer=n3 id=")
    n3.wait_for_log("[INFO]  raft: Installed remote snapshot")
    commit = n1.status()["commit_index"]
    wait_until(lambda: n3.status()["applied_index"] >= commit, what="n3 to catch up")
    assert n3.status()["last_snapshot_index"] >= 200
    for i in (0, 99, 199):
        assert n3.value(f"k{i}", stale=True) == "x" * 200


def test_backup_and_restore_through_a_follower(cluster, tmp_path):
    n1 = cluster.form(3)
    n2, n3 = cluster["n2"], cluster["n3"]
    for i in range(30):
        n1.set(f"k{i}", f"before{i}")
    backup = tmp_path / "backup.snapshot"

    saved = raftkv("snapshot", "save", str(backup), "--addr", n2.http_addr)
    assert saved.returncode == 0, saved.stderr
    info = json.loads(saved.stdout)
    assert info["bytes"] == backup.stat().st_size > 0 and info["index"] >= 30

    # change the store after the backup: overwrite, add, delete
    n1.set("k0", "after")
    n1.set("new", "after")
    assert n1.get("/remove", key="k1").status == 200

    restored = raftkv("snapshot", "restore", str(backup), "--addr", n3.http_addr)
    assert restored.returncode == 0, restored.stderr
    answer = json.loads(restored.stdout)
    assert answer["keys"] == 30 and answer["index"] > info["index"]

    commit = n1.status()["commit_index"]
    cluster.wait_applied(commit)
    for node in (n1, n2, n3):
        assert node.value("k0", stale=True) == "before0"
        assert node.value("k1", stale=True) == "before1"
        assert node.value("new", stale=True) is None
        assert node.status()["last_snapshot_index"] >= answer["index"]
    n2.wait_for_log("[INFO]  raft: Installed remote snapshot")
    n1.wait_for_log("[INFO]  raft: restored user snapshot: index=")

    # the cluster keeps working: forwarding (it needs the HTTP registry, which
    # a restore must not overwrite with the backup's), writes, restarts
    n2.set("later", "yes")
    assert n3.value("later") == "yes"
    assert n2.stop() == 0
    n2.start().wait_ready()
    wait_until(lambda: n2.value("later", stale=True) == "yes", what="n2 to come back with the restore")
    assert n2.value("k0", stale=True) == "before0"


def test_restore_rejects_garbage_and_keeps_the_data(cluster, tmp_path):
    n1 = cluster.form(3)
    n1.set("keep", "me")
    for body in (b"", os.urandom(4096), b"\x81\xa6format\xa4nope"):
        resp = n1.request("POST", "/restore", body=body)
        assert resp.status == 400, resp
        assert resp.json()["param"] == "body"
    bad = tmp_path / "bad.snapshot"
    bad.write_bytes(os.urandom(100))
    result = raftkv("snapshot", "restore", str(bad), "--addr", cluster["n2"].http_addr)
    assert result.returncode == 1 and "HTTP 400" in result.stderr
    assert n1.value("keep") == "me"
    assert n1.set("still", "writable")["index"] > 0
    assert all(n.running for n in cluster.nodes.values())


def test_backup_and_restore_need_the_cluster_key_when_one_is_set(cluster, tmp_path):
    key = "backup-test-cluster-key-0123456789"
    cluster.env = {"RAFT_CLUSTER_KEY": key}
    n1 = cluster.form(3, via_env_join=True)
    n1.set("k", "v")
    backup = tmp_path / "b.snapshot"
    env = {k: v for k, v in os.environ.items() if k != "RAFT_CLUSTER_KEY"}

    def cli(*args: str, with_key: bool) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "raftkv", *args, "--addr", cluster["n2"].http_addr],
                              cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={**env, "RAFT_CLUSTER_KEY": key} if with_key else env)

    refused = cli("snapshot", "save", str(backup), with_key=False)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and not backup.exists()
    saved = cli("snapshot", "save", str(backup), with_key=True)  # relayed to the leader with the token
    assert saved.returncode == 0, saved.stderr
    assert cli("snapshot", "restore", str(backup), with_key=False).returncode == 1
    restored = cli("snapshot", "restore", str(backup), with_key=True)
    assert restored.returncode == 0, restored.stderr
    assert n1.value("k") == "v"
