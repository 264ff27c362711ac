"""Real-process test helpers: Node and Cluster, in the style of rqlite's
system_test/e2e/helpers.py.

Theory of operation: a :class:`Node` is one ``python -m raftkv serve``
process on loopback ports the OS handed out (bind port 0, read it back, close),
with its volume and its captured stderr under the test's tmp directory. Tests
talk to it over HTTP and wait on *conditions* (poll ``/status`` or the log
file with a deadline), never on bare sleeps. :class:`Cluster` owns its nodes
and reaps every process in ``close()``, which the fixture always calls.

Timeouts are short (300ms heartbeats) so elections take well under a second,
while every wait has a generous deadline so a slow CI box is never flaky.
"""

from __future__ import annotations

import contextlib

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]

FAST_ENV = {
    "RAFT_HEARTBEAT_TIMEOUT": "300ms",
    "RAFT_ELECTION_TIMEOUT": "300ms",
    "RAFT_LEADER_LEASE_TIMEOUT": "300ms",
    # scaled with the timeouts, as the default (500ms) is half the default
    # heartbeat timeout: a new leader's deferred commits stay shorter than an election
    "RAFT_READ_LEASE": "150ms",
    "RAFT_SERVER_STABILIZATION_TIME": "1s",
    "RAFT_AUTOPILOT_INTERVAL": "200ms",
    "RAFT_APPLY_TIMEOUT": "5s",
    # a fresh bootstrap node founds its cluster after one election timeout
    # (tests that wipe n1 restore the default wait)
    "RAFT_BOOTSTRAP_WAIT": "0s",
    "LOG_LEVEL": "DEBUG",
}

_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port the OS considers free, never the same one twice per run."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a node that is not up yet, etc.
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


class Response:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Node:
    # how the tests reach the HTTP API (a TLS node: https and the test CA)
    scheme = "http"
    ssl_context = None

    def __init__(self, node_id: str, root: Path, env: dict[str, str] | None = None,
                 bootstrap: bool = False, join: str | None = None,
                 command: list[str] | None = None) -> None:
        self.id = node_id
        self.dir = root / node_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.volume = self.dir / "data"
        self.log_path = self.dir / "stderr.log"
        self.http_port = free_port()
        self.raft_port = free_port()
        self.env = {**FAST_ENV, **(env or {})}
        self.bootstrap = bootstrap
        self.join = join
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        # what to run instead of ``python -m raftkv serve`` (a patched build)
        self.command = command or [sys.executable, "-m", "raftkv", "serve"]
        self.paused = False

    # -- addresses

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def raft_addr(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    # -- process control

    def start(self, extra_env: dict[str, str] | None = None) -> "Node":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_"))}
        env.update(self.env)
        env.update({
            "RAFT_NODE_ID": self.id,
            "HTTP_SERVER_PORT": str(self.http_port),
            "RAFT_SERVER_PORT": str(self.raft_port),
            "RAFT_VOLUME_DIR": str(self.volume),
            "BIND_ADDR": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        })
        if self.bootstrap:
            env["RAFT_BOOTSTRAP"] = "true"
        if self.join:
            env["RAFT_JOIN"] = self.join
        env.update(extra_env or {})
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log_file = open(self.log_path, "ab")
        self.paused = False
        self.proc = subprocess.Popen(self.command, cwd=str(self.dir),
                                     env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 20.0) -> "Node":
        wait_until(lambda: self._alive_or_raise() and self.status(), timeout, what=f"{self.id} to serve HTTP")
        return self

    def _alive_or_raise(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.id} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: no chance to flush or close anything."""
        return self._signal(signal.SIGKILL, 15.0)

    def pause(self) -> None:
        """SIGSTOP: the process is frozen, its sockets stay open."""
        assert self.running, f"{self.id} is not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, sig: int, timeout: float) -> int:
        if self.proc is None:
            return 0
        if self.paused:
            self.resume()  # a stopped process would never act on SIGTERM
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def restart(self) -> "Node":
        self.stop()
        return self.start()

    # -- HTTP

    def request(self, method: str, path: str, params: dict | None = None, body: bytes | None = None,
                json_body: Any = None, headers: dict | None = None, timeout: float = 20.0) -> Response:
        url = f"{self.scheme}://{self.http_addr}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT"):
            body = b""
        req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
                return Response(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read(), dict(exc.headers))

    def get(self, path: str, **params) -> Response:
        return self.request("GET", path, params or None)

    def post(self, path: str, **params) -> Response:
        return self.request("POST", path, params or None)

    def status(self) -> dict:
        resp = self.get("/status")
        assert resp.status == 200, resp
        return resp.json()

    def set(self, key: str, value: str) -> dict:
        resp = self.get("/set", key=key, value=value)
        assert resp.status == 200, resp
        return resp.json()

    def value(self, key: str, stale: bool = False) -> str | None:
        params = {"key": key}
        if stale:
            params["stale"] = "true"
        resp = self.get("/get", **params)
        if resp.status == 404:
            return None
        assert resp.status == 200, resp
        return resp.json()["value"]

    def is_leader(self) -> bool:
        return self.status()["state"] == "Leader"

    # -- fault injection (nodes started with RAFT_FAULT_INJECTION=true)

    def inject(self, **spec) -> dict:
        resp = self.request("POST", "/debug/faults", json_body=spec, timeout=5)
        assert resp.status == 200, resp
        return resp.json()

    def heal(self) -> dict:
        resp = self.request("DELETE", "/debug/faults", timeout=5)
        assert resp.status == 200, resp
        return resp.json()

    # -- logs

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 15.0) -> None:
        wait_until(lambda: text in self.log(), timeout, what=f"{text!r} in {self.id}'s log")


class Cluster:
    """Nodes of one test; ``close()`` reaps every process."""

    def __init__(self, root: Path, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.root = root
        self.env = env or {}
        self.command = command
        self.nodes: dict[str, Node] = {}

    def add(self, node_id: str, bootstrap: bool = False, join: str | None = None,
            env: dict[str, str] | None = None, start: bool = True) -> Node:
        node = Node(node_id, self.root, {**self.env, **(env or {})}, bootstrap=bootstrap, join=join,
                    command=self.command)
        self.nodes[node_id] = node
        if start:
            node.start()
        return node

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.running and not n.paused]

    def leader(self, timeout: float = 15.0, exclude: tuple[str, ...] = ()) -> Node:
        """The node every running node agrees leads, once there is one."""
        def find():
            candidates = [n for n in self.running() if n.id not in exclude]
            leaders = [n for n in candidates if n.is_leader()]
            return leaders[0] if len(leaders) == 1 else None
        return wait_until(find, timeout, what="a single leader")

    def wait_voters(self, ids: list[str], timeout: float = 20.0) -> None:
        def ok():
            leader = self.leader(timeout)
            conf = {s["id"]: s["suffrage"] for s in leader.status()["latest_configuration"]}
            return all(conf.get(i) == "Voter" for i in ids) and conf
        wait_until(ok, timeout, what=f"{ids} to be voters")

    def wait_applied(self, index: int, nodes: list[Node] | None = None, timeout: float = 15.0) -> None:
        for node in nodes or self.running():
            wait_until(lambda: node.status()["applied_index"] >= index, timeout,
                       what=f"{node.id} to apply index {index}")

    def form(self, size: int = 3, via_env_join: bool = False) -> Node:
        """Bootstrap n1, join the others (curl-style /join, or RAFT_JOIN), and
        wait until they are all voters. Returns the leader (n1)."""
        n1 = self.add("n1", bootstrap=True).wait_ready()
        wait_until(n1.is_leader, 15, what="n1 to lead")
        for i in range(2, size + 1):
            node = self.add(f"n{i}", join=n1.http_addr if via_env_join else None).wait_ready()
            if not via_env_join:
                resp = n1.get("/join", nodeId=node.id, raftPort=str(node.raft_port))
                assert resp.status == 200, resp
        self.wait_voters([f"n{i}" for i in range(1, size + 1)])
        self.wait_registered()
        return n1

    def wait_registered(self, timeout: float = 15.0) -> None:
        """Until the leader knows every member's HTTP address (the registry
        writes are done, so later tests see a quiet log)."""
        def ok():
            peers = self.leader(timeout).get("/peers").json()
            return all(p["http"] for p in peers)
        wait_until(ok, timeout, what="every member's HTTP address to be registered")

    def close(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):  # teardown reaps whatever is left
                node.kill()


class Writer(threading.Thread):
    """Writes k0, k1, ... through one node until stopped; remembers the
    writes that were acknowledged (200) -- those must never be lost."""

    def __init__(self, node, prefix: str) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        self.failures: list = []
        self.unexpected: list = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            key, value = f"{self.prefix}{i}", f"v{i}"
            try:
                resp = self.node.get("/set", key=key, value=value)
                if resp.status == 200:
                    self.acked[key] = value
                elif resp.status == 503 and "outcome_unknown" in resp.json():
                    self.failures.append(resp.status)
                else:
                    self.unexpected.append(resp)  # nothing but 200 or a 503 that says so
            except OSError as exc:
                self.failures.append(exc)
            i += 1
