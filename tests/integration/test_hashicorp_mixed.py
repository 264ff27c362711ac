"""A raftkv node in a cluster of real hashicorp/raft nodes (hraftd, hashicorp/raft 1.1.2).

(a) hraftd node0 leads; a raftkv node speaking hashicorp's protocol with
hraftd's state machine is added through hraftd's own ``POST /join``, catches
up, and serves (stale) reads of keys written through hraftd.

(b) a raftkv node bootstraps and leads; hraftd nodes join it with their own
``-join`` (hraftd's JSON body on raftkv's ``/join``, added as voters as a Go
leader would); writes through raftkv are read on the Go nodes; the raftkv
leader hands leadership to a Go node with TimeoutNow.

(c) a mixed cluster under a writer: the leader, Go or Python, is killed with
SIGKILL and restarted on its data, again and again. No acknowledged write
may be lost, every node must end with the same state, no Go node may panic.
``RAFTKV_MIXED_KILLS`` sets the number of kills (6 by default; the long run
is ``RAFTKV_MIXED_KILLS=50``), ``RAFTKV_MIXED_NODES`` the cluster
(``py,go,go`` by default: the first node bootstraps).

Snapshots across kinds: an hraftd node joining a raftkv leader that has
compacted its log restores raftkv's snapshot (seconds, always run); a raftkv
node joining an hraftd leader that has compacted its log installs hraftd's
snapshot (``RAFTKV_MIXED_SNAPSHOT=1``: hraftd snapshots only after 8192 new
entries and a check 120-240 s apart, so the test writes 20000 keys and waits
up to five minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _hraftd() -> str:
    """The hraftd binary: RAFTKV_HRAFTD, else HRAFTD_BIN (the benchmarks'
    name for it), else the build in the shared/ folder beside the repository
    (README there). README, "Put a Python node into a Go cluster", says how
    to build one."""
    for var in ("RAFTKV_HRAFTD", "HRAFTD_BIN"):
        if os.environ.get(var):
            return os.environ[var]
    return str(Path(__file__).resolve().parents[3] / "shared" / "anchors" / "hraftd" / "hraftd")


HRAFTD = _hraftd()

pytestmark = pytest.mark.skipif(not os.access(HRAFTD, os.X_OK),
                                reason=f"hraftd binary not found at {HRAFTD} (set RAFTKV_HRAFTD=/path/to/hraftd; "
                                       "README, 'Put a Python node into a Go cluster', says how to build one)")


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


# --- (b) and (c): a cluster of both kinds ------------------------------------------------

class MixedNode:
    """One node of a mixed cluster: ``py`` (raftkv speaking hashicorp's
    protocol with hraftd's state machine) or ``go`` (hraftd). Both serve
    hraftd's ``POST /key`` (writes, on the leader) and ``GET /key/K``."""

    def __init__(self, kind: str, node_id: str, root: Path) -> None:
        self.kind, self.id = kind, node_id
        self.http_port, self.raft_port = free_port(), free_port()
        self.http = f"127.0.0.1:{self.http_port}"
        self.raft = f"127.0.0.1:{self.raft_port}"
        self.data = root / node_id
        self.log_path = root / f"{node_id}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, bootstrap: bool = False, join: str | None = None, env: dict | None = None) -> None:
        """``env`` adds settings to a raftkv node's environment."""
        log = open(self.log_path, "a")
        log.write(f"\n===== start {self.starts} =====\n")
        log.flush()
        if self.kind == "go":
            args = [HRAFTD, "-id", self.id, "-haddr", self.http, "-raddr", self.raft]
            if join:
                args += ["-join", join]
            self.proc = subprocess.Popen(args + [str(self.data)], stdout=log, stderr=log)
        else:
            node_env = dict(os.environ, RAFT_PROTOCOL="hashicorp", RAFT_FSM="hraftd",
                            RAFT_BOOTSTRAP="true" if bootstrap else "false", **(env or {}))
            self.proc = subprocess.Popen([sys.executable, "-m", "raftkv", "serve", "--node-id", self.id,
                                          "--http-port", str(self.http_port), "--raft-port", str(self.raft_port),
                                          "--volume-dir", str(self.data)], env=node_env, stdout=log, stderr=log)
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def leads(self) -> bool:
        """Whether this node says it leads (hraftd: its leader is itself)."""
        status, body = http("GET", f"http://{self.http}/status", timeout=2)
        if status != 200:
            return False
        doc = json.loads(body)
        if self.kind == "go":
            return (doc.get("leader") or {}).get("address") == self.raft
        return doc.get("state") == "Leader"

    def leader_address(self) -> str:
        status, body = http("GET", f"http://{self.http}/status", timeout=2)
        return (json.loads(body).get("leader") or {}).get("address", "") if status == 200 else ""

    def read(self, key: str) -> str | None:
        """The node's own (stale) value of ``key``; None when absent."""
        query = "?stale=true" if self.kind == "py" else ""
        status, body = http("GET", f"http://{self.http}/key/{key}{query}", timeout=5)
        if status == 404:
            return None
        assert status == 200, (self.id, key, status, body)
        return json.loads(body).get(key) or None

    def panicked(self) -> bool:
        return self.kind == "go" and "panic" in self.log_path.read_text(errors="replace")

    def misnamed_members(self) -> list[str]:
        """A raftkv node's refusals of members it failed to name: every
        candidate here is a member, so each such line is a transport that
        did not know a member's address."""
        if self.kind != "py":
            return []
        return [line for line in self.log_path.read_text(errors="replace").splitlines()
                if "since node is not in configuration" in line or "failed to decode" in line]


class MixedCluster:
    def __init__(self, kinds: list[str], root: Path) -> None:
        counts: dict[str, int] = {}
        self.nodes = []
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
            self.nodes.append(MixedNode(kind, f"{kind}{counts[kind]}", root))

    def form(self) -> None:
        """The first node bootstraps and leads; the others join it the way
        their kind does (hraftd's -join, raftkv's POST /join on the leader)."""
        first = self.nodes[0]
        if first.kind == "go":
            first.start()
        else:
            first.start(bootstrap=True)
        eventually(first.leads, what=f"{first.id} to lead")
        for node in self.nodes[1:]:
            if node.kind == "go":
                node.start(join=first.http)
            else:
                node.start()
                eventually(lambda: http("GET", f"http://{node.http}/status")[0] == 200, what=f"{node.id} to serve")
                status, body = http("POST", f"http://{first.http}/join", {"id": node.id, "addr": node.raft})
                assert status == 200, body
        eventually(lambda: all(n.leader_address() == first.raft for n in self.nodes),
                   what="every node to follow the first")

    def leader(self) -> MixedNode | None:
        for node in self.nodes:
            # a node that is starting or just killed does not answer: not the leader
            with contextlib.suppress(OSError, ValueError):
                if node.alive() and node.leads():
                    return node
        return None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def test_hraftd_nodes_join_a_raftkv_leader_and_read_its_writes(tmp_path):
    cluster = MixedCluster(["py", "go", "go"], tmp_path)
    try:
        cluster.form()
        py, go1, go2 = cluster.nodes
        # hraftd's join made voters, as a Go leader would
        status = json.loads(http("GET", f"http://{py.http}/status")[1])
        assert {s["id"]: s["suffrage"] for s in status["latest_configuration"]} == \
            {"py1": "Voter", "go1": "Voter", "go2": "Voter"}
        term = status["term"]
        for i in range(30):
            status, body = http("GET", f"http://{py.http}/set?key=b{i}&value=v{i}")
            assert status == 200, body
        assert http("POST", f"http://{py.http}/key", {"many": "yes"})[0] == 200
        assert http("GET", f"http://{py.http}/remove?key=b0")[0] == 200
        for go in (go1, go2):
            eventually(lambda: go.read("b29") == "v29", what=f"{go.id} to apply raftkv's writes")
            eventually(lambda: go.read("b0") is None, what=f"{go.id} to apply raftkv's delete")
            assert go.read("b7") == "v7" and go.read("many") == "yes"
        # heartbeats alone keep the Go followers quiet: no election for a while
        time.sleep(3)
        status = json.loads(http("GET", f"http://{py.http}/status")[1])
        assert status["state"] == "Leader" and status["term"] == term
        # TimeoutNow to a Go node: it campaigns at once, and raftkv votes for it
        status, body = http("POST", f"http://{py.http}/transfer-leadership?to=go1")
        assert status == 200, body
        eventually(go1.leads, what="go1 to lead after the transfer")
        eventually(lambda: py.leader_address() == go1.raft, what="the raftkv node to follow go1")
        assert http("POST", f"http://{go1.http}/key", {"after": "transfer"})[0] == 200
        eventually(lambda: py.read("after") == "transfer", what="the raftkv node to apply go1's write")
        for node in cluster.nodes:
            assert node.alive(), f"{node.id} exited"
            assert not node.panicked(), f"{node.id} panicked: see {node.log_path}"
            assert not node.misnamed_members(), node.misnamed_members()[:3]
    finally:
        cluster.stop()


class Writer(threading.Thread):
    """Writes unique keys to whichever node leads; remembers which writes
    were acknowledged (200 from the leader: committed) and which were tried."""

    def __init__(self, cluster: MixedCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.acked: dict[str, str] = {}
        self.tried: list[str] = []
        self.leaders: list[str] = []   # the node each acknowledged write went to
        self.done = threading.Event()
        self.target: MixedNode | None = None

    def run(self) -> None:
        i = 0
        while not self.done.is_set():
            node = self.target
            if node is None or not node.alive():
                node = self.target = self.cluster.leader()
                if node is None:
                    time.sleep(0.1)
                    continue
            key, value = f"w{i:06d}", f"v{i}-{node.id}"
            i += 1
            self.tried.append(key)
            try:
                status, _ = http("POST", f"http://{node.http}/key", {key: value}, timeout=5)
            except Exception:
                status = 0
            if status == 200:
                self.acked[key] = value
                self.leaders.append(node.id)
                time.sleep(0.01)
            else:
                self.target = None
                time.sleep(0.1)

    def acked_since(self, count: int, by: str) -> bool:
        return len(self.leaders) > count and self.leaders[-1] == by


def test_kill_the_leader_of_a_mixed_cluster_repeatedly(tmp_path):
    kills = int(os.environ.get("RAFTKV_MIXED_KILLS", "6"))
    kinds = os.environ.get("RAFTKV_MIXED_NODES", "py,go,go").split(",")
    cluster = MixedCluster(kinds, tmp_path)
    writer = Writer(cluster)
    elections = {"py": 0, "go": 0}
    led_by = []
    started = time.time()
    try:
        cluster.form()
        led_by.append(cluster.nodes[0].id)
        writer.start()
        for k in range(kills):
            leader = eventually(cluster.leader, what="a leader")
            # the leader has taken writes before it dies
            mark = len(writer.leaders)
            eventually(lambda: len(writer.leaders) > mark + 3 and writer.leaders[-1] == leader.id,
                       what=f"writes through {leader.id}")
            for node in cluster.nodes:
                assert node.alive(), f"{node.id} exited on its own: see {node.log_path}"
            leader.kill()
            new = eventually(lambda: (n := cluster.leader()) is not None and n is not leader and n,
                             timeout=30, what=f"a new leader after killing {leader.id}")
            elections[new.kind] += 1
            led_by.append(new.id)
            print(f"kill {k + 1}: killed {leader.id} ({leader.kind}), {new.id} ({new.kind}) leads; "
                  f"{len(writer.acked)} writes acknowledged", flush=True)
            leader.start()
            eventually(lambda: leader.leader_address() != "", timeout=30,
                       what=f"{leader.id} to rejoin after its restart")
        leader = eventually(cluster.leader, what="a leader at the end")
        mark = len(writer.leaders)
        eventually(lambda: len(writer.leaders) > mark + 3, what="writes after the last kill")
        writer.done.set()
        writer.join(30)
        # one more write so that every follower hears of the last commit index
        leader = eventually(cluster.leader, what="a leader for the final write")
        assert http("POST", f"http://{leader.http}/key", {"final": "write"})[0] == 200
        keys = writer.tried + ["final"]

        def states() -> list[dict[str, str | None]]:
            return [{key: node.read(key) for key in keys} for node in cluster.nodes]

        def converged():
            views = states()
            return all(v == views[0] for v in views) and views[0]["final"] == "write" and views

        views = eventually(converged, timeout=60, what="every node to hold the same state")
        lost = {key: value for key, value in writer.acked.items() if views[0][key] != value}
        present = sum(1 for v in views[0].values() if v is not None)
        print(f"{kills} kills in {time.time() - started:.0f} s; elections won: python {elections['py']}, "
              f"go {elections['go']}; leaders in turn: {' '.join(led_by)}", flush=True)
        print(f"final state: {len(cluster.nodes)} nodes identical, {present} keys each "
              f"({len(writer.acked)} acknowledged writes, {len(writer.tried) - len(writer.acked)} "
              f"unacknowledged attempts, {present - 1 - len(writer.acked)} of them applied); "
              f"acknowledged writes lost: {len(lost)}", flush=True)
        assert not lost, f"acknowledged writes lost: {dict(list(lost.items())[:10])}"
        assert elections["go"] >= 1, "no Go node ever won an election"
        if kills >= 20:
            assert elections["py"] >= 1, "no raftkv node ever won an election"
        for node in cluster.nodes:
            assert not node.panicked(), f"{node.id} panicked: see {node.log_path}"
            assert not node.misnamed_members(), node.misnamed_members()[:3]
    finally:
        writer.done.set()
        cluster.stop()


# --- snapshots across kinds ---------------------------------------------------------------

def post_many(http_addr: str, prefix: str, count: int, threads: int = 8) -> None:
    """``count`` hraftd writes (``POST /key``, one key each: one log entry
    each), from ``threads`` keep-alive connections at once so that the
    leader batches them."""
    import http.client
    errors: list[str] = []

    def run(start: int) -> None:
        conn = http.client.HTTPConnection(http_addr, timeout=30)
        try:
            for i in range(start, count, threads):
                conn.request("POST", "/key", body=json.dumps({f"{prefix}{i}": f"v{i}"}),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(f"{prefix}{i}: {r.status}")
                    return
        finally:
            conn.close()

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[:5]


def raftkv_status(node_http: str) -> dict:
    return json.loads(http("GET", f"http://{node_http}/status")[1])


@pytest.mark.skipif(os.environ.get("RAFTKV_MIXED_SNAPSHOT") != "1",
                    reason="takes minutes (hraftd snapshots every 120-240 s): set RAFTKV_MIXED_SNAPSHOT=1")
def test_raftkv_node_installs_a_snapshot_from_a_go_leader(tmp_path):
    """hraftd compacts its log (SnapshotThreshold 8192, TrailingLogs 10240,
    a snapshot check every 120-240 s); a raftkv node that joins afterwards
    cannot be sent the first entries and must install hraftd's snapshot."""
    go = MixedNode("go", "node0", tmp_path)
    py = MixedNode("py", "n1", tmp_path)
    started = time.time()
    try:
        go.start()
        eventually(go.leads, what="hraftd to lead")
        writes = 20000
        post_many(go.http, "s", writes)
        print(f"{writes} writes in {time.time() - started:.0f} s", flush=True)
        eventually(lambda: "compacting logs" in go.log_path.read_text(errors="replace"),
                   timeout=300, what="hraftd to snapshot and compact its log")
        print(f"hraftd compacted after {time.time() - started:.0f} s", flush=True)
        py.start()
        eventually(lambda: http("GET", f"http://{py.http}/status")[0] == 200, what="raftkv to serve")
        status, body = http("POST", f"http://{go.http}/join", {"id": py.id, "addr": py.raft})
        assert status == 200, body
        for i in range(20):
            assert http("POST", f"http://{go.http}/key", {f"after{i}": f"v{i}"})[0] == 200
        eventually(lambda: py.read("after19") == "v19", timeout=60,
                   what="the raftkv node to catch up past the snapshot")
        print(f"raftkv caught up after {time.time() - started:.0f} s", flush=True)
        st = raftkv_status(py.http)
        assert st["last_snapshot_index"] > 0, st
        assert st["state"] == "Follower" and st["leader"]["id"] == go.id, st
        for key, want in (("s0", "v0"), ("s12345", "v12345"), (f"s{writes - 1}", f"v{writes - 1}"), ("after7", "v7")):
            assert py.read(key) == want, key
        log = py.log_path.read_text(errors="replace")
        assert "Installed remote snapshot" in log, log[-3000:]
        assert go.alive() and not go.panicked(), f"hraftd failed: see {go.log_path}"
        assert not py.misnamed_members(), py.misnamed_members()[:3]
    finally:
        py.stop()
        go.stop()


def test_hraftd_node_installs_a_snapshot_from_a_raftkv_leader(tmp_path):
    """A raftkv leader compacts its log quickly (low threshold, short
    interval); an hraftd node that joins afterwards must restore raftkv's
    snapshot (hraftd's JSON map) and read the keys written before it."""
    py = MixedNode("py", "py1", tmp_path)
    go = MixedNode("go", "go1", tmp_path)
    started = time.time()
    # the leader snapshots after 64 new entries, keeps 32, checks every second
    py.start(bootstrap=True, env={"RAFT_SNAPSHOT_THRESHOLD": "64", "RAFT_TRAILING_LOGS": "32",
                                  "RAFT_SNAPSHOT_INTERVAL": "1s"})
    try:
        eventually(py.leads, what="the raftkv node to lead")
        writes = 400
        post_many(py.http, "s", writes, threads=4)
        assert http("GET", f"http://{py.http}/remove?key=s1")[0] == 200

        def compacted():
            st = raftkv_status(py.http)
            return (st["last_snapshot_index"] > 64 and "compacting logs: from=1 " in
                    py.log_path.read_text(errors="replace") and st)
        st = eventually(compacted, timeout=20, what="the raftkv leader to snapshot and compact its log")
        print(f"raftkv snapshot at {st['last_snapshot_index']} after {time.time() - started:.1f} s", flush=True)
        go.start(join=py.http)
        for i in range(10):
            assert http("POST", f"http://{py.http}/key", {f"after{i}": f"v{i}"})[0] == 200
        eventually(lambda: go.read("after9") == "v9", timeout=30, what="hraftd to catch up past the snapshot")
        print(f"hraftd caught up after {time.time() - started:.1f} s", flush=True)
        for key, want in (("s0", "v0"), ("s1", None), ("s123", "v123"), (f"s{writes - 1}", f"v{writes - 1}"),
                          ("after3", "v3")):
            assert go.read(key) == want, key
        log = go.log_path.read_text(errors="replace")
        assert "Installed remote snapshot" in log, log[-3000:]
        assert go.alive() and not go.panicked(), f"hraftd failed: see {go.log_path}"
        assert not py.misnamed_members(), py.misnamed_members()[:3]
    finally:
        go.stop()
        py.stop()
