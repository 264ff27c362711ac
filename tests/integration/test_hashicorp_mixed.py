"""A raftkv node in a cluster of real hashicorp/raft nodes (hraftd, hashicorp/raft 1.1.2).

(a) hraftd node0 leads; a raftkv node speaking hashicorp's protocol with
hraftd's state machine is added through hraftd's own ``POST /join``, catches
up, and serves (stale) reads of keys written through hraftd.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

# the shared/ folder beside the repository holds the hraftd build (README there)
HRAFTD = os.environ.get("HRAFTD_BIN", str(Path(__file__).resolve().parents[3] / "shared" / "anchors" / "hraftd" / "hraftd"))

pytestmark = pytest.mark.skipif(not os.access(HRAFTD, os.X_OK),
                                reason=f"hraftd binary not found at {HRAFTD} (set HRAFTD_BIN=path)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def eventually(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def test_raftkv_node_joins_hraftd_leader_and_serves_its_keys(tmp_path):
    h_http, h_raft, k_http, k_raft = (free_port() for _ in range(4))
    procs = []
    try:
        hraftd = subprocess.Popen([HRAFTD, "-id", "node0", "-haddr", f"127.0.0.1:{h_http}",
                                   "-raddr", f"127.0.0.1:{h_raft}", str(tmp_path / "node0")],
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "node0.log", "w"))
        procs.append(hraftd)
        eventually(lambda: http("POST", f"http://127.0.0.1:{h_http}/key", {"before": "join"})[0] == 200,
                   what="hraftd to lead")
        env = dict(os.environ, RAFT_PROTOCOL="hashicorp", RAFT_FSM="hraftd")
        raftkv = subprocess.Popen([sys.executable, "-m", "raftkv", "serve", "--node-id", "n1",
                                   "--http-port", str(k_http), "--raft-port", str(k_raft),
                                   "--volume-dir", str(tmp_path / "n1")],
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "n1.log", "w"))
        procs.append(raftkv)
        eventually(lambda: http("GET", f"http://127.0.0.1:{k_http}/status")[0] == 200, what="raftkv to serve")
        status, body = http("POST", f"http://127.0.0.1:{h_http}/join", {"id": "n1", "addr": f"127.0.0.1:{k_raft}"})
        assert status == 200, body
        for i in range(20):
            assert http("POST", f"http://127.0.0.1:{h_http}/key", {f"k{i}": f"v{i}"})[0] == 200
        assert http("DELETE", f"http://127.0.0.1:{h_http}/key/k0")[0] == 200

        def caught_up():
            _, body = http("GET", f"http://127.0.0.1:{k_http}/get?key=k19&stale=true")
            return b"v19" in body
        eventually(caught_up, what="the raftkv node to apply hraftd's writes")
        for key, want in (("before", b"join"), ("k7", b"v7")):
            _, body = http("GET", f"http://127.0.0.1:{k_http}/get?key={key}&stale=true")
            assert want in body, body
        # the delete was written after k19: it may be applied a moment later
        eventually(lambda: b"v0" not in http("GET", f"http://127.0.0.1:{k_http}/get?key=k0&stale=true")[1],
                   what="hraftd's delete to apply on the raftkv node")
        status = json.loads(http("GET", f"http://127.0.0.1:{k_http}/status")[1])
        assert status["leader"]["id"] == "node0"
        assert status["state"] == "Follower"
        assert hraftd.poll() is None, "hraftd exited"
        log = (tmp_path / "node0.log").read_text()
        assert "panic" not in log
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
