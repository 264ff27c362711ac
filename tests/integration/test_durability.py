"""Process lifecycle and the volume: clean shutdown on SIGTERM/SIGINT, a torn
log tail on restart, snapshots installed on a node that joins late and
restored on restart, and configuration errors that stop a node at once."""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
import sys

import pytest

from cluster import REPO, wait_until

pytestmark = pytest.mark.integration


def test_sigterm_and_sigint_shut_down_cleanly(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    n1.set("k", "v")
    assert n1.stop() == 0
    assert n1.log().rstrip().endswith("[DEBUG] raft.net: stream layer is closed")
    assert "[INFO]  raft: shutting down" in n1.log()
    n1.start().wait_ready()
    wait_until(n1.is_leader, what="n1 to lead again")
    assert n1.value("k") == "v"
    assert n1._signal(signal.SIGINT, 15) == 0
    assert n1.log().count("[INFO]  raft: shutting down") == 2
    assert "Traceback" not in n1.log()


def test_torn_log_tail_is_cut_with_a_warning(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    for i in range(20):
        n1.set(f"k{i}", str(i))
    assert n1.stop() == 0
    segments = sorted((n1.volume / "log").glob("*.seg"))
    assert segments, list(n1.volume.rglob("*"))
    last = segments[-1]
    size = last.stat().st_size
    # A crash in the middle of appending one more record: its header and part
    # of its payload. (Cutting into the last record instead would drop an
    # entry the stable store records as applied: corruption, refused, see
    # test_corruption.py.)
    with open(last, "ab") as f:
        f.write(struct.pack(">II", 40, 0) + b"\x94\x18")
    n1.start().wait_ready()
    n1.wait_for_log(f"[WARN]  raft: log store: truncated torn tail: segment={last.name} offset={size} "
                    "dropped-bytes=10 error=\"short record\"")
    wait_until(n1.is_leader, what="n1 to lead after the repair")
    assert last.stat().st_size >= size
    for i in range(20):
        assert n1.value(f"k{i}") == str(i)
    assert n1.set("after", "repair")["index"] > 0


def test_snapshot_installed_on_late_joiner_and_restored_on_restart(cluster):
    snap_env = {"RAFT_SNAPSHOT_THRESHOLD": "40", "RAFT_SNAPSHOT_INTERVAL": "200ms",
                "RAFT_TRAILING_LOGS": "10"}
    n1 = cluster.add("n1", bootstrap=True, env=snap_env).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    for i in range(120):
        n1.set(f"k{i}", f"v{i}")
    # the threshold took snapshots along the way; one more now makes sure
    # the newest covers (nearly) everything, whatever the timing was
    assert n1.request("POST", "/snapshot").status in (200, 409)
    wait_until(lambda: n1.status()["last_snapshot_index"] >= 120, what="n1 to snapshot")
    n1.wait_for_log("[INFO]  raft: compacting logs: from=1 to=")

    n2 = cluster.add("n2", env=snap_env).wait_ready()
    assert n1.get("/join", nodeId="n2", raftPort=str(n2.raft_port)).status == 200
    cluster.wait_voters(["n1", "n2"])
    n1.wait_for_log("[INFO]  raft: installing snapshot on: peer=n2 id=")
    n2.wait_for_log("[INFO]  raft: Installed remote snapshot")
    commit = n1.status()["commit_index"]
    wait_until(lambda: n2.status()["applied_index"] >= commit, what="n2 to catch up")
    for i in (0, 57, 119):
        assert n2.value(f"k{i}", stale=True) == f"v{i}"

    # n2 restarts on its state machine file, already past the snapshot
    assert n2.stop() == 0
    n2.start().wait_ready()
    n2.wait_for_log("[INFO]  raft: state machine is ahead of the snapshot, not restoring: id=")
    wait_until(lambda: n2.status()["applied_index"] >= commit, what="n2 to come back")
    for i in (0, 57, 119):
        assert n2.value(f"k{i}", stale=True) == f"v{i}"
    n1.set("later", "yes")
    wait_until(lambda: n2.value("later", stale=True) == "yes", what="replication after restart")

    # without that file (as after a machine restart), from its snapshot plus its log
    assert n2.stop() == 0
    for f in n2.volume.glob("fsm.db*"):
        f.unlink()
    n2.start().wait_ready()
    n2.wait_for_log("[INFO]  raft: restored from snapshot: id=")
    wait_until(lambda: n2.status()["applied_index"] >= commit + 1, what="n2 to replay its log")
    for i in (0, 57, 119):
        assert n2.value(f"k{i}", stale=True) == f"v{i}"
    assert n2.value("later", stale=True) == "yes"
    n1.set("later", "again")
    wait_until(lambda: n2.value("later", stale=True) == "again", what="replication after the rebuild")


@pytest.mark.parametrize("env, needle", [
    ({"RAFT_HEARTBEAT_TIMEOUT": "fast"}, "RAFT_HEARTBEAT_TIMEOUT"),
    ({"RAFT_SERVER_PORT": "99999"}, "RAFT_SERVER_PORT"),
    ({"RAFT_BOOTSTRAP": "maybe"}, "RAFT_BOOTSTRAP"),
    ({"RAFT_NODE_ID": ""}, "RAFT_NODE_ID"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
])
def test_bad_settings_exit_2_naming_the_variable(tmp_path, env, needle):
    full = {"RAFT_NODE_ID": "n1", "RAFT_VOLUME_DIR": str(tmp_path / "v"), "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO)}
    full.update(env)
    proc = subprocess.run([sys.executable, "-m", "raftkv", "serve"], env=full, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2, proc
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_second_process_on_the_same_volume_is_refused(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    n1.set("k", "v")
    twin = cluster.add("twin", start=False)
    twin.volume = n1.volume
    twin.start()
    assert twin.proc.wait(20) == 1
    assert "is in use by another raftkv process" in twin.log()
    assert n1.set("still", "fine")["index"] > 0
    assert n1.stop() == 0
    n1.start().wait_ready()  # the lock went with the process
    wait_until(n1.is_leader, what="n1 to lead again")
    assert n1.value("k") == "v"


def test_a_state_machine_file_without_its_log_is_discarded(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    for i in range(20):
        n1.set(f"old{i}", "x")
    assert n1.stop() == 0
    # everything but the state machine file goes, as if the volume were half wiped
    for part in ("log", "stable", "snapshots"):
        shutil.rmtree(n1.volume / part)
    n1.start().wait_ready()
    n1.wait_for_log("[WARN]  fsm: state machine file is ahead of the log and snapshots, discarding it")
    wait_until(n1.is_leader, what="n1 to lead again")
    assert n1.value("old3", stale=True) is None
    n1.set("fresh", "1")
    assert n1.value("fresh") == "1" and n1.status()["num_keys"] == 1
