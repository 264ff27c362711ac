"""A node whose volume vanishes, is swapped or fills up stops loudly: one
ERROR line naming the path, no more answers from its state machine (stale
reads included), exit 74. Started on a disk that is still full it refuses at
once with exit 73 and says what to do; once space is freed it starts, catches
up, and holds every write it acknowledged."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import urllib.error

import pytest
from cluster import REPO, wait_until

pytestmark = pytest.mark.integration

EXIT_STORAGE_FAILED = 74
EXIT_VOLUME_UNUSABLE = 73


def wait_exit(node, timeout: float = 20.0) -> int:
    """The exit code of a node that stops by itself (reaped, log closed)."""
    node.proc.wait(timeout)
    return node.stop()


def stale_reads_until_exit(node, key: str) -> list:
    """Stale reads of ``key`` until the process is gone: what each got."""
    answers = []
    while node.running:
        try:
            resp = node.get("/get", key=key, stale="true")
            answers.append((resp.status, resp.json().get("error")))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            answers.append(exc)
    return answers


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_follower_whose_volume_goes_away_stops(cluster, how):
    cluster.env["LOG_LEVEL"] = "INFO"
    leader = cluster.form(3)
    for i in range(10):
        leader.set(f"k{i}", str(i))
    cluster.wait_applied(leader.status()["commit_index"])
    n3 = cluster["n3"]
    assert n3.value("k3", stale=True) == "3"

    if how == "deleted":
        shutil.rmtree(n3.volume)  # rm -rf under the running node
        leader.set("after", "x")  # its next write finds out at once
    else:
        n3.volume.rename(n3.volume.with_name("data.old"))
        n3.volume.mkdir()  # nothing is written: the watchdog finds out
    n3.wait_for_log(f'[ERROR] raft: volume lost, shutting down: path={n3.volume} error="directory was {how}"',
                    timeout=10)
    # from that line on the node answers nothing from its state machine
    served = [a for a in stale_reads_until_exit(n3, "k3") if isinstance(a, tuple) and a[0] == 200]
    assert served == []
    assert wait_exit(n3) == EXIT_STORAGE_FAILED
    assert n3.log().count("[ERROR]") == 1, n3.log()[-3000:]
    assert "Traceback" not in n3.log()
    assert leader.set("still", "fine")["index"] > 0  # two of three carry on


def test_start_is_refused_below_the_free_space_minimum(tmp_path):
    volume = tmp_path / "v" / "data"
    env = {"RAFT_NODE_ID": "n1", "RAFT_VOLUME_DIR": str(volume), "RAFT_MIN_FREE_BYTES": str(1 << 60),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "raftkv", "serve"], env=env, capture_output=True, text=True,
                          check=False, timeout=30)
    assert proc.returncode == EXIT_VOLUME_UNUSABLE, proc
    lines = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(lines) == 1, proc.stderr
    assert (f"[ERROR] raft: volume {volume} has " in lines[0]
            and f"bytes free; raftkv needs at least {1 << 60} (RAFT_MIN_FREE_BYTES) to start: "
                "free space and start again" in lines[0]), lines[0]
    assert not volume.parent.exists()  # refused before anything was written


# --------------------------------------------------------------------------- a disk that fills up

@pytest.fixture
def small_disk(tmp_path, cluster):
    """A 48 MiB tmpfs (this test mounts one: it needs root); unmounted
    whatever happens, after the cluster's processes are gone."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48M", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        cluster.close()  # a mount with open files would not come off
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path) -> None:
    """Write ``path`` until the file system has not one byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):  # ENOSPC: on to smaller writes
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert os.statvfs(path).f_bavail == 0


def test_a_full_disk_stops_the_leader_which_catches_up_once_space_is_freed(cluster, small_disk):
    # slower heartbeats than the harness's: n1 must still lead when its disk
    # fills, however busy the machine is with the big writes
    cluster.env.update({"LOG_LEVEL": "INFO", "RAFT_MIN_FREE_BYTES": "8MiB", "RAFT_HEARTBEAT_TIMEOUT": "1s",
                        "RAFT_ELECTION_TIMEOUT": "1s", "RAFT_LEADER_LEASE_TIMEOUT": "500ms"})
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * (16 << 20))  # what the operator will delete to make room
    n1 = cluster.add("n1", bootstrap=True, start=False)
    n1.volume = small_disk / "data"
    n1.start().wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    for node_id in ("n2", "n3"):
        node = cluster.add(node_id).wait_ready()
        assert n1.get("/join", nodeId=node_id, raftPort=str(node.raft_port)).status == 200
    cluster.wait_voters(["n1", "n2", "n3"])
    cluster.wait_registered()

    # big writes, one at a time, until the leader's disk cannot take the next
    acked: dict[str, str] = {}
    refused = None
    for i in range(1000):
        key, value = f"big{i}", f"{i}:" + "x" * (256 << 10)
        resp = n1.request("POST", "/set", params={"key": key}, body=value.encode(),
                          headers={"Content-Type": "application/octet-stream"})
        if resp.status != 200:
            refused = resp
            break
        acked[key] = value
    assert refused is not None and acked, "the disk never filled"
    assert refused.status == 507, refused
    body = refused.json()
    assert body["error"].startswith(f"disk full: cannot write {n1.volume}"), body
    assert "No space left on device" in body["error"] or "database or disk is full" in body["error"], body
    assert body["outcome_unknown"] is True  # the followers may hold it

    assert wait_exit(n1) == EXIT_STORAGE_FAILED
    errors = [line for line in n1.log().splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and f"[ERROR] raft: failed to persist, shutting down: path={n1.volume}" in errors[0], \
        errors
    new_leader = cluster.leader(exclude=("n1",), timeout=20)
    new_leader.set("while-n1-was-down", "yes")

    # started again while the disk is still full: refused at once, saying why
    fill(small_disk / "filler")
    n1.start()
    assert wait_exit(n1, 30) == EXIT_VOLUME_UNUSABLE
    refusal = (f"[ERROR] raft: volume {n1.volume} has 0 bytes free; raftkv needs at least {8 << 20} "
               "(RAFT_MIN_FREE_BYTES) to start: free space and start again")
    assert refusal in n1.log()

    # space freed: it starts, catches up and holds every acknowledged write
    (small_disk / "filler").unlink()
    ballast.unlink()
    n1.start().wait_ready()
    commit = new_leader.status()["commit_index"]
    wait_until(lambda: n1.status()["applied_index"] >= commit, 30, what="n1 to catch up")
    assert n1.value("while-n1-was-down", stale=True) == "yes"
    for key, value in acked.items():
        assert n1.value(key, stale=True) == value, key
    assert "Traceback" not in n1.log()

