"""The shell scripts of the seed demo: startn*.sh honour the seed's
environment variables and CLEAN=1, and pump.sh reports its rate."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from cluster import REPO, Node, wait_until

pytestmark = pytest.mark.integration


def start_script(name: str, tmp_path, node_id: str, **extra) -> tuple[subprocess.Popen, Node, object]:
    node = Node(node_id, tmp_path)  # only for its ports and HTTP helpers
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_"))}
    env.update({"HTTP_SERVER_PORT": str(node.http_port), "RAFT_SERVER_PORT": str(node.raft_port),
                "RAFT_VOLUME_DIR": str(node.volume), "RAFT_HEARTBEAT_TIMEOUT": "300ms",
                "RAFT_SERVER_STABILIZATION_TIME": "1s", "RAFT_AUTOPILOT_INTERVAL": "200ms", **extra})
    out = open(node.log_path, "wb")
    proc = subprocess.Popen([str(REPO / "scripts" / name)], env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, node, out


def test_start_scripts_and_pump(tmp_path):
    procs = []
    try:
        (tmp_path / "n1" / "data").mkdir(parents=True)
        (tmp_path / "n1" / "data" / "junk").write_text("wiped by CLEAN=1")
        p1, n1, o1 = start_script("startn1.sh", tmp_path, "n1", CLEAN="1")
        procs.append((p1, o1))
        n1.wait_ready()
        wait_until(n1.is_leader, what="n1 to lead")
        assert not (n1.volume / "junk").exists()
        text = n1.log()
        assert text.startswith("Starting node1\nCleaning the raft volumes.\n"), text[:200]
        st = n1.status()
        assert st["id"] == "n1" and st["http_address"] == n1.http_addr and st["raft_address"] == n1.raft_addr

        p2, n2, o2 = start_script("startn2.sh", tmp_path, "n2")
        procs.append((p2, o2))
        n2.wait_ready()
        assert n2.status()["id"] == "n2" and n2.log().startswith("Starting node2\n")
        assert "Cleaning" not in n2.log()
        assert n1.get("/join", nodeId="n2", raftPort=str(n2.raft_port)).status == 200

        pump = subprocess.run([str(REPO / "scripts" / "pump.sh"), "50"], capture_output=True, text=True,
                              env={**os.environ, "ADDR": f"http://{n2.http_addr}"}, timeout=120)
        assert pump.returncode == 0, pump
        m = re.search(r"^50 writes \(50 ok\) in [0-9.]+ seconds: [0-9.]+ writes/s$", pump.stdout, re.M)
        assert m, pump.stdout
        assert n1.value("50") == "50"
        bad = subprocess.run([str(REPO / "scripts" / "pump.sh"), "many"], capture_output=True, text=True)
        assert bad.returncode == 2

        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            assert proc.wait(15) == 0
    finally:
        for proc, out in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            out.close()
