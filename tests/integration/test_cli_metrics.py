"""The raftkv CLI as a client, and /metrics, against a live cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster import REPO, wait_until

pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAFTKV_ADDR", None)
    return subprocess.run([sys.executable, "-m", "raftkv", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_cli_client_commands(cluster):
    n1 = cluster.form(3)
    addr = cluster["n2"].http_addr  # a follower: everything is forwarded

    r = cli("status", "--addr", addr)
    assert r.returncode == 0 and '"id": "n2"' in r.stdout and '"state": "Follower"' in r.stdout

    r = cli("set", "color", "blue", "--addr", addr)
    assert r.returncode == 0 and '"index"' in r.stdout and '"size": 4' in r.stdout, r.stderr
    assert "blue" not in r.stdout  # the answer names the write, it does not echo the value
    # get prints the value alone; --json the answer; --addr before or after the subcommand
    for args in (("get", "color", "--addr", addr), ("--addr", addr, "get", "color")):
        r = cli(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "blue\n", ""), (args, r)
    r = cli("--addr", addr, "get", "--json", "color")
    assert r.returncode == 0 and json.loads(r.stdout) == {"key": "color", "value": "blue", "served_by": "n1"}, r
    r = cli("--addr", addr, "status")
    assert r.returncode == 0 and '"id": "n2"' in r.stdout, r
    r = cli("remove", "color", "--addr", addr)
    assert r.returncode == 0 and '"removed": true' in r.stdout
    r = cli("get", "color", "--addr", addr)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == "raftkv: HTTP 404: key not found: color"

    # peers: a table like `vault operator raft list-peers`
    cluster.wait_applied(n1.status()["commit_index"])
    r = cli("peers", "--addr", addr)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("  ")[0] == "Node"
    for col in ("Address", "State", "Voter", "Commit Index", "Trails Leader By"):
        assert col in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"n1", "n2", "n3"}
    assert rows["n1"][2] == "leader" and rows["n2"][2] == "follower" and rows["n2"][3] == "true"
    assert rows["n1"][1] == n1.raft_addr
    r = cli("peers", "--json", "--addr", addr)
    assert r.returncode == 0 and '"suffrage": "Voter"' in r.stdout

    r = cli("watch", "--once", "--addr", addr)
    assert r.returncode == 0, r.stderr
    assert "leader: n1" in r.stdout and "Trails Leader By" in r.stdout and "Last Contact" in r.stdout

    # join a fresh node as a nonvoter, then remove it
    n4 = cluster.add("n4").wait_ready()
    r = cli("join", "n4", n4.raft_addr, "--http-addr", n4.http_addr, "--addr", addr)
    assert r.returncode == 0 and '"suffrage": "Nonvoter"' in r.stdout, r.stderr
    wait_until(lambda: n4.status()["applied_index"] >= n1.status()["commit_index"], what="n4 to catch up")
    r = cli("remove-peer", "n4", "--addr", addr)
    assert r.returncode == 0 and '"removed": true' in r.stdout, r.stderr
    assert "n4" not in [s["id"] for s in n1.status()["latest_configuration"]]
    r = cli("remove-peer", "n4", "--addr", addr)
    assert r.returncode == 1 and r.stderr.strip() == "raftkv: HTTP 404: unknown server 'n4'"

    r = cli("transfer-leadership", "--to", "n3", "--addr", addr)
    assert r.returncode == 0 and '"transferred": true' in r.stdout, r.stderr
    wait_until(lambda: cluster.leader().id == "n3", what="n3 to lead")
    r = cli("transfer-leadership", "--to", "n9", "--addr", addr)
    assert r.returncode == 1 and "n9" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    # a node that is not there: one line, exit 2
    n4.stop()
    for args in (("status",), ("peers",), ("watch", "--once")):
        r = cli(*args, "--addr", n4.http_addr)
        assert r.returncode == 2, (args, r)
        assert f"cannot reach {n4.http_addr}" in (r.stderr + r.stdout)
        assert len(r.stderr.strip().splitlines()) <= 1


def _metrics(node) -> dict[tuple[str, tuple], float]:
    resp = node.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_names_and_values_move_after_writes(cluster):
    n1 = cluster.form(3)
    before = _metrics(n1)
    names = {name for name, _ in before}
    for name in ("raft_state", "raft_term", "raft_commit_index", "raft_applied_index", "raft_last_log_index",
                 "raft_leader_last_contact_seconds", "raft_commit_time_seconds_count",
                 "raft_fsm_apply_seconds_count", "raft_replication_append_entries_rpc_total",
                 "raft_replication_append_entries_logs_total", "raft_state_candidate_total",
                 "raft_state_leader_total", "raft_snapshot_create_total", "raftkv_http_requests_total",
                 "process_resident_memory_bytes"):
        assert name in names, name
    assert before[("raft_state", (("state", "Leader"),))] == 1
    assert before[("raft_state_leader_total", ())] >= 1
    assert ("raft_leader_last_contact_seconds", (("peer", "n2"),)) in before

    for i in range(5):
        n1.set(f"m{i}", str(i))
    after = _metrics(n1)
    assert after[("raft_commit_index", ())] >= before[("raft_commit_index", ())] + 5
    assert after[("raft_applied_index", ())] >= before[("raft_applied_index", ())] + 5
    assert after[("raft_commit_time_seconds_count", ())] >= before[("raft_commit_time_seconds_count", ())] + 5
    assert after[("raft_fsm_apply_seconds_count", ())] > before[("raft_fsm_apply_seconds_count", ())]
    for peer in ("n2", "n3"):
        key = ("raft_replication_append_entries_logs_total", (("peer", peer),))
        assert after[key] >= before.get(key, 0) + 5
    key = ("raftkv_http_requests_total", (("method", "GET"), ("route", "/set"), ("status", "200")))
    assert after[key] == before.get(key, 0) + 5

    follower = _metrics(cluster["n2"])
    assert follower[("raft_state", (("state", "Follower"),))] == 1
    assert ("raft_last_contact_seconds", ()) in follower
    assert follower[("raft_applied_index", ())] >= after[("raft_commit_index", ())] - 5
    assert cluster["n2"].get("/metrics").headers.get("Access-Control-Allow-Origin") == "*"
