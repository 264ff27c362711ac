"""The raftkv CLI as a client, and /metrics, against a live cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster import REPO, wait_until

pytestmark = pytest.mark.integration


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAFTKV_ADDR", None)
    return env


def cli(*args: str, timeout: float = 60.0, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftkv", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), input=stdin if stdin is not None else "", check=False)


def one_json_line(r: subprocess.CompletedProcess) -> object:
    """The answer of a client command: JSON on one line, as the API and curl
    print it (the README's examples)."""
    assert r.returncode == 0, r
    assert r.stdout.count("\n") == 1 and r.stdout.endswith("\n"), r.stdout
    assert '": ' in r.stdout  # the API's own spacing: {"key": "user", ...}
    return json.loads(r.stdout)


def test_cli_client_commands(cluster, tmp_path):
    n1 = cluster.form(3)
    addr = cluster["n2"].http_addr  # a follower: writes are forwarded

    r = cli("status", "--addr", addr)
    st = one_json_line(r)
    assert st["id"] == "n2" and st["state"] == "Follower"

    r = cli("set", "color", "blue", "--addr", addr)
    answer = one_json_line(r)
    assert answer["key"] == "color" and answer["size"] == 4 and answer["index"] > 0
    assert "blue" not in r.stdout  # the answer names the write, it does not echo the value
    assert r.stdout.startswith('{"key": "color", "index": ')  # as the README shows it

    # values too long for a command line: from a file, or from stdin, sent as
    # the request's body (a URL would stop at the node's 64 KiB head limit)
    big = "".join(f"line {i} é\n" for i in range(20_000))  # ~200 KB, newlines kept
    (tmp_path / "big").write_text(big, encoding="utf-8")
    r = cli("set", "big", "--value-file", str(tmp_path / "big"), "--addr", addr)
    assert one_json_line(r)["size"] == len(big.encode())
    assert n1.value("big") == big
    r = cli("set", "piped", "-", "--addr", addr, stdin="from stdin\n")
    assert one_json_line(r)["size"] == 11 and n1.value("piped") == "from stdin\n"
    (tmp_path / "huge").write_bytes(b"x" * (2 * 1024 * 1024))  # over HTTP_MAX_BODY (1 MiB)
    r = cli("set", "huge", "--value-file", str(tmp_path / "huge"), "--addr", addr)
    assert r.returncode == 1 and r.stderr.startswith("raftkv: HTTP 413: "), r
    assert len(r.stderr.splitlines()) == 1
    # get prints the value alone; --json the answer; --addr before or after the subcommand
    for args in (("get", "color", "--addr", addr), ("--addr", addr, "get", "color")):
        r = cli(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "blue\n", ""), (args, r)
    # a follower serves a linearizable read itself, once the leader confirmed its index;
    # --level strong goes through the log, on the leader
    r = cli("--addr", addr, "get", "--json", "color")
    assert r.returncode == 0 and json.loads(r.stdout) == {"key": "color", "value": "blue", "level": "linearizable",
                                                          "served_by": "n2"}, r
    r = cli("--addr", addr, "get", "--json", "--level", "strong", "color")
    assert r.returncode == 0 and json.loads(r.stdout)["served_by"] == "n1", r
    r = cli("--addr", addr, "status")
    assert one_json_line(r)["id"] == "n2"
    r = cli("remove", "color", "--addr", addr)
    assert one_json_line(r)["removed"] is True
    r = cli("get", "color", "--addr", addr)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == "raftkv: HTTP 404: key not found: color"

    # peers: a table like `vault operator raft list-peers`
    cluster.wait_applied(n1.status()["commit_index"])
    r = cli("peers", "--addr", addr)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Node", "Address", "State", "Voter", "Healthy", "Last", "Contact", "Last",
                                "Index", "Lag"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"n1", "n2", "n3"}
    assert rows["n1"][2] == "leader" and rows["n2"][2] == "follower" and rows["n2"][3] == "true"
    assert rows["n1"][1] == n1.raft_addr
    assert max(map(len, lines)) <= 100
    r = cli("peers", "--wide", "--addr", addr)
    assert r.returncode == 0 and "Applied Index" in r.stdout and n1.http_addr in r.stdout, r
    r = cli("peers", "--json", "--addr", addr)
    assert [p["suffrage"] for p in one_json_line(r)] == ["Voter"] * 3

    r = cli("watch", "--once", "--addr", addr)
    assert r.returncode == 0, r.stderr
    assert "leader: n1" in r.stdout and "Last Contact" in r.stdout and "Lag" in r.stdout
    assert max(map(len, r.stdout.splitlines())) <= 100

    # `raftkv watch | head -3`: the reader goes away, watch ends quietly
    watch = subprocess.Popen([sys.executable, "-m", "raftkv", "watch", "--interval", "0.05", "--addr", addr],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        assert watch.stdout.readline().startswith(b"raftkv watch")
        watch.stdout.close()
        assert watch.wait(30) == 141
        assert watch.stderr.read() == b""
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)
        watch.stderr.close()

    r = cli("snapshot", "take", "--addr", addr)
    assert one_json_line(r)["index"] > 0

    # join a fresh node as a nonvoter, then remove it
    n4 = cluster.add("n4").wait_ready()
    r = cli("join", "n4", n4.raft_addr, "--http-addr", n4.http_addr, "--addr", addr)
    assert one_json_line(r)["suffrage"] == "Nonvoter"
    wait_until(lambda: n4.status()["applied_index"] >= n1.status()["commit_index"], what="n4 to catch up")
    r = cli("remove-peer", "n4", "--addr", addr)
    assert one_json_line(r)["removed"] is True
    assert "n4" not in [s["id"] for s in n1.status()["latest_configuration"]]
    r = cli("remove-peer", "n4", "--addr", addr)
    assert r.returncode == 1 and r.stderr.strip() == "raftkv: HTTP 404: unknown server 'n4'"

    r = cli("transfer-leadership", "--to", "n3", "--addr", addr)
    assert one_json_line(r)["transferred"] is True
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


def test_wait_for_a_leader_then_for_voters(cluster):
    n1 = cluster.add("n1", bootstrap=True)  # not waited for: `raftkv wait` does that
    r = cli("wait", "--addr", n1.http_addr, "--leader", "--timeout", "30")
    assert (r.returncode, r.stdout) == (0, ""), r
    assert n1.status()["leader"]["id"] == "n1"

    n2 = cluster.add("n2").wait_ready()
    assert n1.get("/join", nodeId="n2", raftPort=str(n2.raft_port)).status == 200
    # asked of a follower: it looks at the leader's configuration
    r = cli("wait", "--addr", n2.http_addr, "--voters", "2", "--timeout", "30")
    assert r.returncode == 0, r
    conf = {s["id"]: s["suffrage"] for s in n1.status()["latest_configuration"]}
    assert conf == {"n1": "Voter", "n2": "Voter"}

    r = cli("wait", "--addr", n1.http_addr, "--voters", "3", "--timeout", "1.5")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[-1] == (f"raftkv wait: timed out after 1.5s waiting for the leader of {n1.http_addr} "
                         "to have 3 voters: the leader's configuration has 2 voters (n1, n2)"), r.stderr
    waiting = f"raftkv wait: waiting up to 1.5s for the leader of {n1.http_addr} to have 3 voters ..."
    assert lines[:-1] in ([], [waiting]), r.stderr


def test_peers_says_how_long_a_dead_server_has_been_silent(cluster):
    n1 = cluster.form(3)
    cluster["n3"].kill()

    def silent_for_a_second():
        n3 = next(p for p in n1.get("/peers").json() if p["id"] == "n3")
        return n3["healthy"] is False and n3["last_contact"] >= 1000
    wait_until(silent_for_a_second, what="the leader to miss n3 for a second")
    r = cli("peers", "--addr", n1.http_addr)
    assert r.returncode == 0, r
    row = next(line for line in r.stdout.splitlines() if line.startswith("n3 "))
    assert row.split()[2] == "unreachable" and re.search(r"  \? \(down [1-9]\d*s\)$", row), row


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
