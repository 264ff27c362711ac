"""One raftkv node of a namespaced cluster (:mod:`.netns`): its addresses, its
process in its own network namespace, and its HTTP API as the test sees it.

Node ``i`` binds 10.77.0.(10+i) in its namespace, serves HTTP on port 8000
and Raft on 9000 there, and advertises the link address 10.77.0.(100+i):9000,
where the link proxies listen (:mod:`.netns` has the whole layout). The test
reaches it through the gateway's port on 127.0.0.1 (:attr:`NetNode.http_addr`).
:meth:`NetNode.kill`, :meth:`~NetNode.pause` and the others note what they do
in the cluster's event list, for the run's timeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

SUBNET = "10.77.0"
HTTP_PORT = 8000
RAFT_PORT = 9000
REPO = Path(__file__).resolve().parents[2]

FAST_ENV = {
    "RAFT_HEARTBEAT_TIMEOUT": "300ms",
    "RAFT_ELECTION_TIMEOUT": "300ms",
    "RAFT_LEADER_LEASE_TIMEOUT": "300ms",
    "RAFT_SERVER_STABILIZATION_TIME": "1s",
    "RAFT_AUTOPILOT_INTERVAL": "200ms",
    "RAFT_APPLY_TIMEOUT": "3s",
    "LOG_LEVEL": "DEBUG",
}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


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
        except Exception as exc:  # a node that is not up yet, a partitioned one, etc.
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Cluster(Protocol):
    """What a node reads of the cluster it belongs to (a :class:`~.netns.NetCluster`)."""

    prefix: str
    root: Path
    env: dict[str, str]

    def note(self, kind: str, text: str, ok: bool | None = None) -> None: ...


class NetNode:
    """One raftkv process in its own namespace."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.id = f"n{index}"
        self.netns = f"{cluster.prefix}-{self.id}"
        self.ip = f"{SUBNET}.{10 + index}"
        self.link_ip = f"{SUBNET}.{100 + index}"
        self.dir = cluster.root / self.id
        self.volume = self.dir / "data"
        self.log_path = self.dir / "node.log"
        self.proc: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.control_path = cluster.root / f"{self.id}.proxy.sock"
        self.local_port = 0  # the gateway's port for this node, on 127.0.0.1
        self.paused = False
        self._log = None

    # -- addresses
    @property
    def http_addr(self) -> str:
        """Where the test reaches this node's HTTP API (through the gateway)."""
        return f"127.0.0.1:{self.local_port}"

    @property
    def raft_addr(self) -> str:
        return f"{self.link_ip}:{RAFT_PORT}"

    @property
    def real_http(self) -> str:
        return f"{self.ip}:{HTTP_PORT}"

    # -- processes
    def start(self, bootstrap: bool = False, join: str | None = None, extra_env: dict | None = None) -> "NetNode":
        assert not self.running, f"{self.id} already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFT_", "HTTP_"))}
        env.update(FAST_ENV)
        env.update(self.cluster.env)
        env.update({
            "RAFT_NODE_ID": self.id,
            "BIND_ADDR": self.ip,
            "ADVERTISE_ADDR": self.raft_addr,
            "HTTP_ADVERTISE_ADDR": self.real_http,
            "HTTP_SERVER_PORT": str(HTTP_PORT),
            "RAFT_SERVER_PORT": str(RAFT_PORT),
            "RAFT_VOLUME_DIR": str(self.volume),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        })
        if bootstrap:
            env["RAFT_BOOTSTRAP"] = "true"
        if join:
            env["RAFT_JOIN"] = join
        env.update(extra_env or {})
        self._log = open(self.log_path, "ab")
        self.paused = False
        # ip netns exec execs the command, so proc.pid is the node itself
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-m", "raftkv", "serve"],
                                     cwd=str(self.dir), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.cluster.note("node", f"start {self.id}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 20.0) -> "NetNode":
        def ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.id} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.status()
        wait_until(ready, timeout, what=f"{self.id} to serve HTTP")
        return self

    def kill(self) -> None:
        """kill -9: nothing is flushed or closed."""
        self._signal(signal.SIGKILL)
        self.cluster.note("fault", f"kill -9 {self.id}")

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        self.cluster.note("node", f"stop {self.id}")

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def pause(self) -> None:
        assert self.running
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        self.cluster.note("fault", f"SIGSTOP {self.id}")

    def resume(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False
        self.cluster.note("heal", f"SIGCONT {self.id}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- HTTP (through the gateway)
    def request(self, method: str, path: str, params: dict | None = None, timeout: float = 5.0) -> Response:
        url = f"http://{self.http_addr}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=b"" if method in ("POST", "PUT") else None, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read())

    def get(self, path: str, timeout: float = 5.0, **params) -> Response:
        return self.request("GET", path, params or None, timeout=timeout)

    def status(self, timeout: float = 2.0) -> dict:
        resp = self.get("/status", timeout=timeout)
        assert resp.status == 200, resp
        return resp.json()

    def state(self) -> str | None:
        try:
            return self.status()["state"]
        except Exception:
            return None

    def set(self, key: str, value: str, timeout: float = 5.0) -> Response:
        """A write; status 0 when no answer came in time (not acknowledged,
        outcome unknown), as a client on a broken network sees it."""
        try:
            resp = self.get("/set", timeout=timeout, key=key, value=value)
        except OSError as exc:
            resp = Response(0, repr(exc).encode())
        self.cluster.note("op", f"{self.id} set {key}={value} -> {resp.status}", ok=resp.status == 200)
        return resp

    def value(self, key: str, stale: bool = False, timeout: float = 5.0) -> str | None:
        params = {"key": key, **({"stale": "true"} if stale else {})}
        resp = self.get("/get", timeout=timeout, **params)
        if resp.status == 404:
            return None
        assert resp.status == 200, resp
        return resp.json()["value"]

    def metrics(self) -> dict[str, float]:
        """Prometheus samples, keyed by ``name{labels}``."""
        resp = self.get("/metrics")
        assert resp.status == 200, resp
        out = {}
        for line in resp.body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out

    # -- the link proxy of this node's outbound links
    def proxy_control(self, request: dict) -> dict:
        import socket as _socket
        with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.control_path))
            s.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        answer = json.loads(buf)
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer
