"""The shell scripts of the seed demo: startn*.sh honour the seed's
environment variables and CLEAN=1, pump.sh reports its rate, and demo.sh
runs on volumes of its own and ends with a short, true summary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from cluster import REPO, Node, free_port, wait_until

pytestmark = pytest.mark.integration


def start_script(name: str, tmp_path, node_id: str, **extra) -> tuple[subprocess.Popen, Node, object]:
    node = Node(node_id, tmp_path)  # only for its ports and HTTP helpers
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_"))}
    env.update({"HTTP_SERVER_PORT": str(node.http_port), "RAFT_SERVER_PORT": str(node.raft_port),
                "RAFT_VOLUME_DIR": str(node.volume), "RAFT_HEARTBEAT_TIMEOUT": "300ms",
                "RAFT_SERVER_STABILIZATION_TIME": "1s", "RAFT_AUTOPILOT_INTERVAL": "200ms",
                "RAFTKV_PEER_KEY_FILE": str(tmp_path / "peer-key"), **extra})
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

        # scripts/raftkv: the CLI from .venv with nothing activated, not "command not found"
        bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}
        assert subprocess.run(["bash", "-c", "command -v raftkv"], env=bare, check=False).returncode != 0
        wrapper = subprocess.run([str(REPO / "scripts" / "raftkv"), "wait", "--addr", n1.http_addr, "--leader",
                                  "--timeout", "30"], env=bare, capture_output=True, text=True, timeout=120,
                                 check=False)
        assert (wrapper.returncode, wrapper.stdout, wrapper.stderr) == (0, "", ""), wrapper

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
        # the two proved the key the first one made, on the Raft port only
        key = tmp_path / "peer-key"
        assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text()) == 64
        for node in (n1, n2):
            assert "the Raft port is unauthenticated" not in node.log()
            assert f"The Raft port proves the key in {key}" in node.log()
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


WALKTHROUGH_VOLUMES = [Path(f"/tmp/node{i}") for i in (1, 2, 3)]


def _volume_marks() -> list:
    marks = []
    for path in WALKTHROUGH_VOLUMES:
        try:
            st = path.stat()
            marks.append((str(path), st.st_ino, st.st_mtime_ns))
        except FileNotFoundError:
            marks.append((str(path), None, None))
    return marks


def test_demo_runs_on_its_own_volumes_and_says_what_to_try(tmp_path):
    http_ports = [free_port() for _ in range(3)]
    raft_ports = [free_port() for _ in range(3)]
    logs, tmp = tmp_path / "logs", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_", "CLEAN"))}
    env.update({"LOGS": str(logs), "TMPDIR": str(tmp), "HTTP_PORTS": " ".join(map(str, http_ports)),
                "RAFT_PORTS": " ".join(map(str, raft_ports)), "RAFT_HEARTBEAT_TIMEOUT": "300ms",
                "RAFT_SERVER_STABILIZATION_TIME": "2s", "RAFT_AUTOPILOT_INTERVAL": "200ms"})
    before = _volume_marks()
    # its own session, so a Ctrl-C can reach it and its nodes as a terminal's would
    demo = subprocess.Popen([str(REPO / "scripts" / "demo.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("  stop ") for line in lines) or demo.poll() is not None,
                   timeout=90, what="the demo's summary")
        out = "".join(lines)
        assert demo.poll() is None, out
        h1, h2 = http_ports[0], http_ports[1]

        # its data lives in a directory of its own under TMPDIR, not in the walkthrough's volumes
        data = Path(re.search(r"data is in (\S+) \(deleted on exit\)", out).group(1))
        assert data.parent == tmp and sorted(p.name for p in data.iterdir()) == ["node1", "node2", "node3", "peer-key"]
        assert _volume_marks() == before

        # it said it was waiting for the promotion before showing voters, and the roles are true
        waiting = out.index("Waiting for autopilot to promote them to voters")
        assert "healthy for 2s (RAFT_SERVER_STABILIZATION_TIME) after it joined" in out
        table = out[out.index("Node  Address"):out.index("Next:")]
        assert waiting < out.index("Node  Address")
        rows = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.strip()}
        assert {n: (r[2], r[3]) for n, r in rows.items()} == \
            {"n1": ("leader", "true"), "n2": ("follower", "true"), "n3": ("follower", "true")}, table
        assert '"Voter"' not in out[:waiting]  # nothing claimed voters before autopilot promoted them
        m = re.search(r"Promoted after (\d+)s", out)
        assert m and int(m.group(1)) >= 2, out

        # short and readable: no /status dump, and the next things to try
        assert "latest_configuration" not in out and max(len(line) for line in lines) < 200, out
        for text in (f"http://localhost:{h1}/ui", f"tail -f {logs}/n*.log",
                     f'curl "http://localhost:{h1}/set?key=user&value=kj"',
                     f'curl "http://localhost:{h2}/get?key=user"', "Ctrl-C"):
            assert text in out, (text, out)
        assert "Starting node1" in (logs / "n1.log").read_text()

        # Ctrl-C: the nodes stop, the demo's data goes, the logs stay
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(30) == 0
        reader.join(10)
        out = "".join(lines)
        assert "Stopping the cluster." in out and not data.exists(), out
        assert (logs / "n1.log").exists()
        assert _volume_marks() == before
        for port in http_ports:
            wait_until(lambda: _refused(port), timeout=15, what=f"port {port} to close")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)


def _refused(port: int) -> bool:
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
