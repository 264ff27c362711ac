"""A client workload that records a history (see :mod:`raftkv.chaos.history`).

Theory of operation
-------------------
K client threads each loop: pick a random node (from ``nodes()``, asked
afresh every time so membership changes are followed), a random key of a
small key space and a random operation (set with a value unique to the run,
linearizable get, or remove), send it over a fresh HTTP connection and
record call time, return time and outcome. Every loop is bounded both in
operations (``max_ops`` per client) and in time (``stop()`` or
``duration``).

Outcomes are classified from what the client actually knows:

* 200 (and 404 for a get): ``ok``;
* 503 whose body says ``"outcome_unknown": false``, a 4xx, a refused
  connection: ``fail`` (the request did nothing);
* 503 with ``"outcome_unknown": true``, a timeout or a connection lost after
  the request was sent, a 5xx other than 503: ``unknown`` for writes. A
  read that did not answer is a ``fail`` (it changed nothing and observed
  nothing). Anything but 200/404/503 is also kept in ``unexpected``.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import urllib.parse
from typing import Callable

from raftkv.config.textforms import split_host_port

from .history import FAIL, OK, UNKNOWN, Op

__all__ = ["Workload"]


class Workload:
    def __init__(self, nodes: Callable[[], list[tuple[str, str]]], clients: int = 5, keys: int = 4,
                 seed: int = 0, timeout: float = 5.0, max_ops: int = 5000, duration: float = 600.0,
                 key_prefix: str = "k", clock: Callable[[], float] = time.monotonic,
                 write_ratio: float = 0.5, remove_ratio: float = 0.1, read_level: str | None = None) -> None:
        self.nodes = nodes
        self.read_level = read_level   # the reads' level=, or the node's default (linearizable)
        self.clients = clients
        self.keys = [f"{key_prefix}{i}" for i in range(keys)]
        self.seed = seed
        self.timeout = timeout
        self.max_ops = max_ops
        self.duration = duration
        self.clock = clock
        self.write_ratio = write_ratio
        self.remove_ratio = remove_ratio
        self.ops: list[Op] = []
        self.unexpected: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ids = 0
        self.t0 = clock()

    # ------------------------------------------------------------------ control

    def start(self) -> "Workload":
        for c in range(self.clients):
            t = threading.Thread(target=self._client, args=(c,), name=f"workload-c{c}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout + 10)
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"workload clients did not stop: {alive}")

    def now(self) -> float:
        return self.clock() - self.t0

    def count(self, outcome: str | None = None, since: float = 0.0, writes_only: bool = False) -> int:
        with self._lock:
            return sum(1 for op in self.ops
                       if (outcome is None or op.outcome == outcome) and op.call >= since
                       and (not writes_only or op.is_write))

    def wait_ok(self, n: int, since: float, timeout: float, writes_only: bool = False) -> bool:
        """Until ``n`` ops called after ``since`` succeeded (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.count(OK, since, writes_only) >= n:
                return True
            self._stop.wait(0.05)
        return self.count(OK, since, writes_only) >= n

    def history(self) -> list[Op]:
        with self._lock:
            return sorted(self.ops, key=lambda op: (op.call, op.id))

    # ------------------------------------------------------------------ clients

    def _client(self, c: int) -> None:
        rng = random.Random(self.seed * 1000 + c)
        end = time.monotonic() + self.duration
        for n in range(self.max_ops):
            if self._stop.is_set() or time.monotonic() >= end:
                return
            nodes = self.nodes()
            if not nodes:
                self._stop.wait(0.05)
                continue
            node_id, addr = rng.choice(nodes)
            key = rng.choice(self.keys)
            r = rng.random()
            if r < self.write_ratio - self.remove_ratio:
                f, value = "set", f"c{c}-{n}"
            elif r < self.write_ratio:
                f, value = "remove", None
            else:
                f, value = "get", None
            op = self._invoke(c, node_id, addr, f, key, value)
            if op.outcome == FAIL and op.status is None:
                self._stop.wait(0.02)  # a node that is down: don't spin on it

    def _invoke(self, client: int, node_id: str, addr: str, f: str, key: str, value: str | None) -> Op:
        with self._lock:
            self._ids += 1
            op_id = self._ids
        params = {"key": key}
        if f == "set":
            params["value"] = value
        elif f == "get" and self.read_level is not None:
            params["level"] = self.read_level
        path = f"/{f}?" + urllib.parse.urlencode(params)
        method = "GET" if f == "get" else "POST"
        op = Op(op_id, client, f, key, self.now(), None, UNKNOWN, value if f == "set" else None, None, node_id)
        host, port = split_host_port(addr)
        conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        sent = False
        try:
            conn.connect()
            conn.request(method, path, body=b"" if method == "POST" else None)
            sent = True
            resp = conn.getresponse()
            body = resp.read()
            op.status = resp.status
            self._classify(op, resp.status, body)
        except (socket.timeout, TimeoutError) as exc:
            self._lost(op, sent, f"timeout: {exc}")
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError,
                http.client.HTTPException, OSError) as exc:
            if isinstance(exc, ConnectionRefusedError) and not sent:
                op.outcome, op.error = FAIL, "connection refused"
            else:
                self._lost(op, sent, f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        op.ret = self.now()  # for unknown ops: when the client gave up (the checker ignores it)
        with self._lock:
            self.ops.append(op)
            if op.error and op.error.startswith("unexpected"):
                self.unexpected.append(op)
        return op

    def _lost(self, op: Op, sent: bool, error: str) -> None:
        op.error = error
        op.outcome = UNKNOWN if (sent and op.is_write) else FAIL

    def _classify(self, op: Op, status: int, body: bytes) -> None:
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        if status == 200:
            op.outcome = OK
            if op.f == "get":
                op.value = doc.get("value")
            elif op.f == "remove":
                op.removed = bool(doc.get("removed"))
        elif status == 404 and op.f == "get":
            op.outcome, op.value = OK, None
        elif status == 503:
            op.error = str(doc.get("error", ""))[:200]
            unknown = doc.get("outcome_unknown")
            if unknown is False or not op.is_write:
                op.outcome = FAIL
            else:
                op.outcome = UNKNOWN
                if unknown is not True:
                    op.error = f"unexpected 503 without outcome_unknown: {op.error}"
        else:
            op.error = f"unexpected HTTP {status}: {body[:200]!r}"
            op.outcome = UNKNOWN if (op.is_write and status >= 500) else FAIL
