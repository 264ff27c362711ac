"""The synchronous client, on the standard library alone (``http.client``, ``ssl``).

:class:`Client` drives :func:`~.core.conduct`'s steps with blocking IO: one
kept-alive connection per node and thread at a time, taken from a small pool
(so one client may serve several threads), and ``time.sleep`` for backoff.
A connection the node closed while it sat idle is noticed before it is
used again, so a write is never sent on a dead connection and mistaken for
one whose outcome is unknown.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
import urllib.parse
from typing import Any

from .core import Failure, Operation, Send, Sleep, drive_sync
from .errors import Answer
from .operations import Calls

__all__ = ["Client"]


class _Pool:
    """Idle connections by node (``scheme://host:port``)."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _take(self, base: str) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(base)
            while idle:
                conn = idle.pop()
                if conn.sock is not None and not _dropped(conn.sock):
                    return conn
                conn.close()
        return None

    def _give_back(self, base: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(base, []).append(conn)

    def _open(self, base: str, timeout: float) -> http.client.HTTPConnection:
        url = urllib.parse.urlsplit(base)
        host, port = url.hostname or "127.0.0.1", url.port
        if url.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def send(self, step: Send) -> Answer | Failure:
        conn = self._take(step.base)
        if conn is None:
            conn = self._open(step.base, step.connect_timeout)
            try:
                conn.connect()
            except (ssl.SSLError, ssl.CertificateError) as exc:
                conn.close()
                return Failure(exc, sent=False, tls=True)
            except OSError as exc:
                conn.close()
                return Failure(exc, sent=False, timed_out=isinstance(exc, TimeoutError))
        assert conn.sock is not None
        conn.sock.settimeout(step.timeout)
        try:
            conn.request(step.method, step.target, body=step.body, headers=dict(step.headers))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return Failure(exc, sent=True, timed_out=isinstance(exc, TimeoutError))
        headers = {name.lower(): value for name, value in resp.getheaders()}
        if resp.will_close:
            conn.close()
        else:
            self._give_back(step.base, conn)
        return Answer(resp.status, data, headers)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _dropped(sock: Any) -> bool:
    """Whether an idle connection was closed by the node: a kept-alive
    connection has nothing to read until a request is sent, so readable
    means closed (or broken)."""
    try:
        if hasattr(select, "poll"):  # select() cannot watch a descriptor over FD_SETSIZE
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Client(Calls):
    """A raftkv cluster, synchronously: ``Client("127.0.0.1:8000").set("k", "v")``.

    Every call finds the leader, retries what did nothing through an
    election with exponential backoff, and gives up at its ``timeout`` with
    a typed error (:mod:`raftkv.client.errors`; docs/client.md). Safe to
    share between threads. ``close()`` (or ``with Client(...) as c:``)
    closes its connections."""

    def __init__(self, addresses: Any, *, cacert: Any = None, cluster_key: str | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(addresses, cacert=cacert, cluster_key=cluster_key, timeout=timeout)
        self._pool = _Pool(self._ssl)

    def _run(self, op: Operation) -> Any:
        return drive_sync(self._steps(op), self._perform)

    def _perform(self, step: Send | Sleep) -> Answer | Failure | None:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        return self._pool.send(step)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({', '.join(self.addresses)})"
