"""The seed demo as a test: bootstrap n1, join n2 and n3 with curl-style
/join calls, write on the leader, read on followers (forwarded and stale),
delete through a follower, restart everything, and check the logs tell the
story in hashicorp's words on the right nodes. And the README's walkthrough
block itself, pasted into bash as a new user would (on ports and paths of
the test's own)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest

from cluster import REPO, free_port, wait_until

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}) "
                  r"(\[TRACE\]|\[DEBUG\]|\[INFO\] |\[WARN\] |\[ERROR\]) [a-z.]+: ")


def in_order(text: str, *needles: str) -> bool:
    pos = 0
    for needle in needles:
        found = text.find(needle, pos)
        if found < 0:
            raise AssertionError(f"{needle!r} not found (in order) in log:\n{text[-4000:]}")
        pos = found + len(needle)
    return True


def line_time(text: str, needle: str) -> float:
    """Seconds since the epoch of the first log line containing ``needle``."""
    from datetime import datetime
    line = next(line for line in text.splitlines() if needle in line)
    return datetime.strptime(line.split(" ", 1)[0].replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_walkthrough(cluster):
    n1 = cluster.form(3)
    n2, n3 = cluster["n2"], cluster["n3"]

    # a write on the leader answers once committed and applied
    r = n1.set("hello", "world")
    assert r["served_by"] == "n1" and r["key"] == "hello" and r["size"] == 5 and "value" not in r
    index = r["index"]

    # a follower serves linearizable reads once the leader confirmed their index ...
    resp = n2.get("/get", key="hello")
    assert resp.status == 200, resp
    assert resp.json() == {"key": "hello", "value": "world", "level": "linearizable", "served_by": "n2"}
    assert resp.headers["X-Raftkv-Served-By"] == "n2"
    # ... and forwards strong ones, which go through the log
    assert n2.get("/get", key="hello", level="strong").json()["served_by"] == "n1"
    # ... and serves stale reads itself
    cluster.wait_applied(index)
    resp = n3.get("/get", key="hello", stale="true")
    assert resp.json() == {"key": "hello", "value": "world", "level": "none", "served_by": "n3"}

    # writes and removes through followers are forwarded
    r = n3.get("/set", key="k2", value="v2").json()
    assert r["served_by"] == "n1" and r["index"] > index
    resp = n2.get("/remove", key="hello")
    assert resp.status == 200 and resp.json()["removed"] is True and resp.json()["served_by"] == "n1"
    assert n2.get("/get", key="hello").status == 404
    assert n2.request("DELETE", "/remove", {"key": "hello"}).json()["removed"] is False

    # hraftd-style routes
    resp = n3.request("POST", "/key", json_body={"a": "1", "b": "two words"})
    assert resp.status == 200 and resp.json()["keys"] == 2, resp
    assert n2.get("/key/b").json() == {"b": "two words"}
    resp = n2.request("DELETE", "/key/a")
    assert resp.status == 200 and resp.json()["removed"] is True
    assert n1.get("/key/a").status == 404

    # status on a follower names the leader and its HTTP address
    st = n2.status()
    assert st["state"] == "Follower" and st["leader"]["id"] == "n1"
    assert st["leader"]["http"] == n1.http_addr and st["leader"]["address"] == n1.raft_addr
    for key in ("id", "state", "term", "last_log_index", "last_log_term", "commit_index", "applied_index",
                "fsm_pending", "last_snapshot_index", "last_snapshot_term", "last_contact", "num_peers",
                "leader", "latest_configuration", "protocol_version", "rss_bytes"):
        assert key in st, key
    assert st["num_peers"] == 2 and st["rss_bytes"] > 0
    assert {s["id"]: s["suffrage"] for s in st["latest_configuration"]} == \
        {"n1": "Voter", "n2": "Voter", "n3": "Voter"}
    peers = n3.get("/peers").json()
    assert [p["id"] for p in peers] == ["n1", "n2", "n3"]
    assert all(p["healthy"] for p in peers) and [p["leader"] for p in peers] == [True, False, False]

    # every node stops cleanly and comes back with its data
    final = n1.status()["commit_index"]
    cluster.wait_applied(final)
    for node in (n1, n2, n3):
        assert node.stop() == 0
    for node in (n1, n2, n3):
        node.start()
    for node in (n1, n2, n3):
        node.wait_ready()
    leader = cluster.leader()
    assert leader.value("k2") == "v2" and leader.value("b") == "two words"
    assert leader.value("hello") is None and leader.value("a") is None
    for node in (n1, n2, n3):
        wait_until(lambda: node.value("k2", stale=True) == "v2", what=f"k2 on {node.id}")

    # ---- the logs, in hashicorp's words, on the right nodes
    log1, log2, log3 = n1.log(), n2.log(), n3.log()
    node1 = f"Node at {n1.raft_addr}"
    in_order(log1,
             "[INFO]  raft: creating Raft: config=\"{ProtocolVersion:3 HeartbeatTimeout:300ms",
             "[INFO]  raft: initial configuration: index=0 servers=[]",
             f"[INFO]  raft: entering follower state: follower=\"{node1} [Follower]\" leader-address= leader-id=",
             "[WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr= last-leader-id=",
             f"[INFO]  raft: entering candidate state: node=\"{node1} [Candidate]\" term=2",
             "[DEBUG] raft: calculated votes needed: needed=1 term=2",
             "[DEBUG] raft: vote granted: from=n1 term=2 tally=1",
             "[INFO]  raft: election won: term=2 tally=1",
             f"[INFO]  raft: entering leader state: leader=\"{node1} [Leader]\"",
             f"[INFO]  raft: updating configuration: command=AddNonvoter server-id=n2 server-addr={n2.raft_addr} "
             f"servers=\"[{{Suffrage:Voter ID:n1 Address:{n1.raft_addr}}} "
             f"{{Suffrage:Nonvoter ID:n2 Address:{n2.raft_addr}}}]\"",
             "[INFO]  raft: added peer, starting replication: peer=n2",
             f"[WARN]  raft: appendEntries rejected, sending older logs: peer=\"{{Nonvoter n2 {n2.raft_addr}}}\" next=",
             f"[INFO]  raft: pipelining replication: peer=\"{{Nonvoter n2 {n2.raft_addr}}}\"")
    in_order(log1,
             f"[INFO]  raft.autopilot: Promoting server: id=n2 address={n2.raft_addr} name=n2",
             f"[INFO]  raft: updating configuration: command=AddVoter server-id=n2 server-addr={n2.raft_addr}")
    in_order(log1,
             f"command=AddNonvoter server-id=n3 server-addr={n3.raft_addr}",
             "[INFO]  raft: added peer, starting replication: peer=n3",
             f"[INFO]  raft.autopilot: Promoting server: id=n3 address={n3.raft_addr} name=n3",
             f"command=AddVoter server-id=n3 server-addr={n3.raft_addr}")
    # autopilot waited ServerStabilizationTime (1s here) after each join, the
    # first one too (the README's "~10 s after the join" at the default 10s)
    for node_id in ("n2", "n3"):
        joined = line_time(log1, f"command=AddNonvoter server-id={node_id} ")
        promoted = line_time(log1, f"raft.autopilot: Promoting server: id={node_id} ")
        assert promoted - joined >= 1.0, (node_id, joined, promoted)
    for log, node in ((log2, n2), (log3, n3)):
        in_order(log,
                 "[INFO]  raft: initial configuration: index=0 servers=[]",
                 f"[INFO]  raft: entering follower state: follower=\"Node at {node.raft_addr} [Follower]\"",
                 "[WARN]  raft: failed to get previous log: previous-index=",
                 "last-index=0 error=\"log not found\"",
                 "[INFO]  raft: shutting down")
        # a joined node never started an election of its own before the leader found it
        first_run = log.split("shutting down")[0]
        assert "entering candidate state" not in first_run
    # the restart recovered the configuration from disk
    in_order(log1, "[INFO]  raft: shutting down", "[INFO]  raft: initial configuration: index=")
    assert "initial configuration: index=0" not in log1.split("shutting down", 1)[1]
    # at DEBUG each node's applied writes include raftkv's own (the HTTP-address
    # registry), labelled as such rather than shown as a write of a key no user sent
    for log in (log1, log2, log3):
        for node in (n1, n2, n3):
            registered = (r"\[DEBUG\] fsm: applied write: index=\d+ term=\d+ op=register-http "
                          rf"node={node.id} http=127\.0\.0\.1:{node.http_port} internal=true$")
            assert re.search(registered, log, re.MULTILINE), node.id
        assert "\\x00raftkv" not in log
    # every log line has hclog's shape
    for log in (log1, log2, log3):
        for line in log.splitlines():
            if line[:1].isdigit():
                assert LINE.match(line), line
        assert "Traceback" not in log


# The seed walkthrough's commands, which the README keeps as they were
# (only their output goes to a file now).
SEED_COMMANDS = [
    "CLEAN=1 scripts/startn1.sh", "CLEAN=1 scripts/startn2.sh", "CLEAN=1 scripts/startn3.sh",
    'curl "http://localhost:8000/join?nodeId=n2&raftPort=9001"',
    'curl "http://localhost:8000/join?nodeId=n3&raftPort=9002"',
    'curl "http://localhost:8000/set?key=user&value=kj"',
    'curl "http://localhost:8001/get?key=user"',
    'curl "http://localhost:8002/remove?key=user"',
    "scripts/pump.sh",
]


def readme_walkthrough() -> list[str]:
    """The lines of the first code block of README's walkthrough section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## The walkthrough, by hand", 1)[1].split("\n## ", 1)[0]
    return section.split("```\n", 2)[1].splitlines()


def test_the_readme_walkthrough_keeps_the_seed_commands_and_waits_before_curl():
    lines = readme_walkthrough()
    commands = [line.split("  #")[0].strip() for line in lines]
    for i in (1, 2, 3):
        assert f"CLEAN=1 scripts/startn{i}.sh > /tmp/n{i}.log 2>&1 &" in commands, lines
    found = [next(n for n, c in enumerate(commands) if c.startswith(seed)) for seed in SEED_COMMANDS]
    assert found == sorted(found), lines  # in the seed's order
    wait = commands.index("scripts/raftkv wait --addr localhost:8000 --leader")
    assert max(found[:3]) < wait < found[3]
    assert not any(".venv/bin" in line for line in lines)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_the_readme_walkthrough_runs_as_pasted(tmp_path):
    """The block run by bash, with the test's free ports and directories
    put in place of the README's, and the benchmark cut to one second."""
    script = "\n".join(readme_walkthrough())
    for i in (1, 2, 3):
        http, raft = free_port(), free_port()
        script = script.replace(f"localhost:{7999 + i}", f"localhost:{http}")
        script = script.replace(f"raftPort={8999 + i}", f"raftPort={raft}")
        script = script.replace(f"/tmp/n{i}.log", str(tmp_path / f"n{i}.log"))
        script = script.replace(f"scripts/startn{i}.sh", f"HTTP_SERVER_PORT={http} RAFT_SERVER_PORT={raft} "
                                f"RAFT_VOLUME_DIR={tmp_path / f'node{i}'} scripts/startn{i}.sh")
        if i == 1:
            n1 = f"http://127.0.0.1:{http}"
    script = script.replace("bench -c 64 -d 10", "bench -c 64 -d 1")
    assert not re.search(r"localhost:800\d\b|raftPort=900\d\b| /tmp/n\d\.log", script), script
    # then stop the nodes as the README says
    script = "set -e\n" + script + "\nkill %1 %2 %3\nwait\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_", "RAFTKV_", "CLEAN"))}
    env.update({"ADDR": n1, "RAFTKV_ADDR": n1, "RAFT_HEARTBEAT_TIMEOUT": "300ms",
                "RAFT_ELECTION_TIMEOUT": "300ms", "RAFT_LEADER_LEASE_TIMEOUT": "300ms",
                # any key file the start scripts make stays in the test's directory
                "RAFTKV_PEER_KEY_FILE": str(tmp_path / "peer-key")})
    proc = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, out
    assert '{"key": "user", "value": "kj", "level": "linearizable", "served_by": "n2"}' in out, out
    assert re.search(r'\{"key": "user", "index": \d+, "size": 2, "served_by": "n1"\}', out), out
    assert '"removed": true' in out and "1000 writes (1000 ok)" in out, out
    assert "Traceback" not in out
    logs = {i: (tmp_path / f"n{i}.log").read_text() for i in (1, 2, 3)}
    assert logs[1].startswith("Starting node1\nCleaning the raft volumes.\n"), logs[1][:300]
    assert "raft: entering leader state" in logs[1]
    for i in (2, 3):
        assert "raft: failed to get previous log" in logs[i] and "Traceback" not in logs[i], logs[i][-2000:]
