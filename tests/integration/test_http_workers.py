"""HTTP workers (HTTP_WORKERS=N): reads stay linearizable unless stale=true,
a node survives kill -9 of any of its processes, and /status and /metrics
list the processes with their CPU time and RSS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import urllib.parse
import urllib.request

import pytest

from cluster import Writer, wait_until

pytestmark = pytest.mark.integration

WORKERS = {"HTTP_WORKERS": "2"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(node, role: str) -> list[int]:
    return [p["pid"] for p in node.status()["processes"] if p["role"] == role]


class Client:
    """One keep-alive connection (so consecutive requests stay on one worker)."""

    def __init__(self, node) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=20)

    def get(self, path: str, **params) -> tuple[int, dict]:
        self.conn.request("GET", path + "?" + urllib.parse.urlencode(params))
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def close(self) -> None:
        self.conn.close()


@pytest.mark.parametrize("level", ["linearizable", "lease"])
def test_a_write_acknowledged_on_one_connection_is_read_on_every_other(cluster, level):
    cluster.env.update(WORKERS)
    leader = cluster.form(3)
    follower = cluster["n2"]
    wait_until(lambda: len(_pids(leader, "http-worker")) == 2, 20, what="both workers")
    writer = Client(leader)
    # several connections each: the kernel spreads them over both workers
    readers = [Client(leader) for _ in range(4)] + [Client(follower) for _ in range(2)]
    try:
        for i in range(150):
            status, body = writer.get("/set", key=f"k{i}", value=f"v{i}")
            assert status == 200, body
            reader = readers[i % len(readers)]
            status, body = reader.get("/get", key=f"k{i}", level=level)
            assert (status, body.get("value")) == (200, f"v{i}"), (i, status, body)
            # and an overwrite, read back at once on yet another connection
            status, body = readers[(i + 1) % len(readers)].get("/set", key=f"k{i}", value=f"w{i}")
            assert status == 200, body
            status, body = readers[(i + 2) % len(readers)].get("/get", key=f"k{i}", level=level)
            assert (status, body.get("value")) == (200, f"w{i}"), (i, status, body)
        # a follower's workers hand these reads to its Raft process, which
        # serves them itself (a follower read), not the leader
        for reader in readers[4:]:
            status, body = reader.get("/get", key="k149", level=level)
            assert (status, body.get("value"), body.get("served_by")) == (200, "w149", follower.id), body
        # stale reads are served by every node's workers, and catch up
        wait_until(lambda: follower.value("k149", stale=True) == "w149", 10, what="a stale read to catch up")
    finally:
        for client in [writer, *readers]:
            client.close()
    # the Raft story comes from the Raft process alone
    assert "entering leader state" in leader.log()
    assert "http.worker: HTTP worker serving" in leader.log()


@pytest.mark.parametrize("how,level", [("partition", "linearizable"), ("partition", "lease"),
                                       ("handover", "lease")])
def test_a_deposed_leaders_workers_never_serve_a_stale_read(cluster, how, level):
    """Reads run on the old leader's workers from before it loses
    leadership until it serves the new leader's state: every read that
    started after the new leader acknowledged a write sees that write. A
    lease read is served by the workers themselves while the lease board
    shows a lease; a handover ends the lease before TimeoutNow leaves."""
    cluster.env.update(WORKERS)
    cluster.env["RAFT_FAULT_INJECTION"] = "true"
    old = cluster.form(3)
    old.set("k", "old")
    clients = [Client(old) for _ in range(4)]
    for client in clients:
        assert client.get("/get", key="k", level=level) == (200, {"key": "k", "value": "old", "level": level,
                                                                  "served_by": "n1"})
    reads: list[tuple[float, int, str | None]] = []  # (started, status, value)
    stop = threading.Event()

    def read_on(client: Client) -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, body = client.get("/get", key="k", level=level)
            reads.append((started, status, body.get("value")))
    # reads run from before the partition on, through n1's time as a
    # deposed leader that has not noticed yet, to its stepping down
    threads = [threading.Thread(target=read_on, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(reads) > 20, 10, what="reads under way")
        if how == "partition":
            old.inject(drop=["n2", "n3"])
            new = cluster.leader(exclude=("n1",), timeout=20)
        else:
            assert old.get("/transfer-leadership", to="n2").status == 200
            new = cluster["n2"]
        new.set("k", "new")
        acked = time.monotonic()
        if how == "partition":
            time.sleep(2.0)
            old.heal()
        wait_until(lambda: any(s == 200 and v == "new" for t, s, v in reads if t > acked), 20,
                   what="n1 to serve reads of the new leader's state")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for client in clients:
            client.close()
    assert {status for _, status, _ in reads} <= {200, 503}, reads
    late = [(status, value) for started, status, value in reads if started > acked]
    assert late and all(value == "new" for status, value in late if status == 200), late
    # a stale read may be old: that is what stale=true says
    assert old.value("k", stale=True) in ("old", "new")


def test_a_killed_worker_is_replaced(cluster):
    cluster.env.update(WORKERS)
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, 15, what="n1 to lead")
    workers = wait_until(lambda: len(_pids(n1, "http-worker")) == 2 and _pids(n1, "http-worker"), 20,
                         what="both workers")
    os.kill(workers[0], signal.SIGKILL)
    n1.wait_for_log("HTTP worker exited, starting another")
    wait_until(lambda: len(_pids(n1, "http-worker")) == 2 and workers[0] not in _pids(n1, "http-worker"), 20,
               what="a new worker")
    for i in range(20):
        assert n1.set(f"a{i}", "x")["key"] == f"a{i}"
        assert n1.value(f"a{i}") == "x"


def test_kill_9_of_the_raft_process_loses_no_acknowledged_write_and_stops_the_workers(cluster):
    cluster.env.update(WORKERS)
    leader = cluster.form(3)
    workers = wait_until(lambda: len(_pids(leader, "http-worker")) == 2 and _pids(leader, "http-worker"), 20,
                         what="both workers")
    writer = Writer(leader, "w")
    writer.start()
    wait_until(lambda: len(writer.acked) >= 30, 20, what="some acknowledged writes")
    leader.kill()
    writer.stop_flag.set()
    writer.join(30)
    assert not writer.unexpected, writer.unexpected[:3]
    # without the Raft process the workers neither serve nor stay
    wait_until(lambda: not any(_alive(pid) for pid in workers), 10, what="the workers to exit")
    new = cluster.leader(exclude=(leader.id,), timeout=20)
    leader.start().wait_ready()
    for key, value in writer.acked.items():
        assert new.value(key) == value, key
    wait_until(lambda: leader.value(next(reversed(writer.acked)), stale=True) is not None, 20,
               what="the restarted node to catch up")
    wait_until(lambda: len(_pids(leader, "http-worker")) == 2, 20, what="the restarted node's workers")


def test_status_and_metrics_list_the_processes(cluster):
    cluster.env.update(WORKERS)
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    # the port answers once the first worker listens; the second may follow
    wait_until(lambda: len(_pids(n1, "http-worker")) == 2, 20, what="both workers")
    rows = n1.status()["processes"]
    assert [r["role"] for r in rows] == ["raft", "http-worker", "http-worker"]
    assert rows[0]["pid"] == n1.proc.pid
    for row in rows:
        assert row["cpu_seconds"] >= 0 and row["rss_bytes"] > 1024 * 1024, row
    metrics = n1.get("/metrics").body.decode()
    for row in rows:
        assert f'raftkv_process_cpu_seconds_total{{pid="{row["pid"]}",role="{row["role"]}"}}' in metrics
        assert f'raftkv_process_resident_memory_bytes{{pid="{row["pid"]}",role="{row["role"]}"}}' in metrics


def test_without_workers_status_lists_the_one_process(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    rows = n1.status()["processes"]
    assert [(r["role"], r["pid"]) for r in rows] == [("raft", n1.proc.pid)]


def test_workers_relay_streams_and_bodies_to_the_raft_process(cluster):
    cluster.env.update(WORKERS)
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, 15, what="n1 to lead")
    n1.set("a", "1")
    # a server-sent-events stream, relayed as it comes
    with urllib.request.urlopen(f"http://{n1.http_addr}/debug/stream", timeout=15) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.readline().decode().startswith("event: hello")
    # a backup out, and back in as a streamed body
    backup = n1.get("/snapshot")
    assert backup.status == 200 and len(backup.body) > 0, backup
    n1.set("a", "2")
    restored = n1.request("POST", "/restore", body=backup.body,
                          headers={"Content-Type": "application/octet-stream"})
    assert restored.status == 200, restored
    assert n1.value("a") == "1"
    # a JSON body on another route
    assert n1.request("POST", "/key", json_body={"b": "3"}).status == 200
    assert n1.get("/key/b").json() == {"b": "3"}
