"""A raftkv follower of a Go leader (hraftd, hashicorp/raft 1.1.2) cannot
forward to it: nothing tells raftkv where a Go node serves HTTP. Its answer
to a write or a linearizable read says that, and where to go instead, not
"not known yet" (which would never change)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_hashicorp_mixed import HRAFTD, eventually, free_port, http

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.access(HRAFTD, os.X_OK),
                       reason=f"hraftd binary not found at {HRAFTD} (set RAFTKV_HRAFTD=/path/to/hraftd; "
                              "README, 'Put a Python node into a Go cluster', says how to build one)"),
]


def test_python_follower_of_a_go_leader_says_where_writes_go(tmp_path):
    procs: list[subprocess.Popen] = []
    with open(tmp_path / "node0.log", "w") as go_log, open(tmp_path / "n1.log", "w") as py_log:
        try:
            _run(tmp_path, go_log, py_log, procs)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


def _run(tmp_path, go_log, py_log, procs: list[subprocess.Popen]) -> None:
    h_http, h_raft, k_http, k_raft = (free_port() for _ in range(4))
    procs.append(subprocess.Popen([HRAFTD, "-id", "node0", "-haddr", f"127.0.0.1:{h_http}",
                                   "-raddr", f"127.0.0.1:{h_raft}", str(tmp_path / "node0")],
                                  stdout=subprocess.DEVNULL, stderr=go_log))
    eventually(lambda: http("POST", f"http://127.0.0.1:{h_http}/key", {"before": "join"})[0] == 200,
               what="hraftd to lead")
    # a short RAFT_APPLY_TIMEOUT caps how long the follower waits for the
    # leader's HTTP address before it answers
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_"))}
    env.update(RAFT_PROTOCOL="hashicorp", RAFT_FSM="hraftd", RAFT_APPLY_TIMEOUT="1s")
    procs.append(subprocess.Popen([sys.executable, "-m", "raftkv", "serve", "--node-id", "n1",
                                   "--http-port", str(k_http), "--raft-port", str(k_raft),
                                   "--volume-dir", str(tmp_path / "n1")],
                                  env=env, stdout=subprocess.DEVNULL, stderr=py_log))
    eventually(lambda: http("GET", f"http://127.0.0.1:{k_http}/status")[0] == 200, what="raftkv to serve")
    status, body = http("POST", f"http://127.0.0.1:{h_http}/join", {"id": "n1", "addr": f"127.0.0.1:{k_raft}"})
    assert status == 200, body
    eventually(lambda: b"join" in http("GET", f"http://127.0.0.1:{k_http}/get?key=before&stale=true")[1],
               what="the raftkv node to apply hraftd's write")

    status, body = http("GET", f"http://127.0.0.1:{k_http}/set?key=k&value=v")
    answer = json.loads(body)
    assert status == 503, answer
    assert answer["error"] == ("the leader node0 is a hashicorp/raft node whose HTTP address raftkv "
                               "cannot learn; send writes to it directly"), answer
    assert answer["leader"] == {"id": "node0", "address": f"127.0.0.1:{h_raft}", "http": None}
    assert answer["outcome_unknown"] is False

    status, body = http("GET", f"http://127.0.0.1:{k_http}/get?key=before")
    assert status == 503 and "send linearizable reads (or read here with stale=true)" in json.loads(body)["error"]
    # nothing was written by the refused write
    assert http("GET", f"http://127.0.0.1:{k_http}/get?key=k&stale=true")[0] == 404
