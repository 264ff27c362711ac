"""The HTTP hot path: ``GET /get`` and ``GET /set`` without aiohttp's
per-request machinery.

Theory of operation
-------------------
A read or a write is a few microseconds of Raft and key-value work wrapped
in ~60 µs of HTTP serving, most of it aiohttp building request and response
objects, routing, and formatting headers. Every connection to the HTTP port
starts here. While its requests are ``GET /get?...`` or ``GET /set?...``
(HTTP/1.1, no body, plain ASCII target and headers) this protocol frames
them itself (a GET head ends at the blank line), builds a small stand-in for
``web.Request`` and runs the very same middlewares and handler the router
would (metrics, JSON errors, the cluster-key check, ``handle_get`` /
``handle_set`` with their forwarding to the leader), then writes the
``web.Response`` they return in one ``write``. So the answers, status codes,
headers and metrics are those of the aiohttp path; only the framing differs.

The first request that is anything else (another route or method, a body,
HTTP/1.0, an ``Expect`` or ``Upgrade``, a head over 64 KiB, anything
unusual) hands the connection to aiohttp for good: its request handler is
attached to the transport and fed the bytes from the start of that request.
Requests are answered one at a time and in order, so at that moment every
earlier one has been answered and nothing is lost or reordered.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import time
from email.utils import formatdate
from types import SimpleNamespace

from aiohttp import __version__ as aiohttp_version
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import hclog

_HOT_PATHS = ("/get", "/set")
_HOT_PREFIXES = tuple(b"GET %s?" % path.encode("ascii") for path in _HOT_PATHS)
_PREFIX_LEN = max(map(len, _HOT_PREFIXES))
_MAX_HEAD = 64 * 1024
# aiohttp's keepalive_timeout: an idle keep-alive connection is closed after it.
IDLE_TIMEOUT = 75.0
# Targets made only of printable ASCII, without the query separators yarl and
# aiohttp might treat differently from the usual "&" and "=".
_PLAIN_TARGET = re.compile(rb"[!-~]+")
_UNUSUAL_TARGET = re.compile(rb"[;#]|%(?![0-9A-Fa-f]{2})")
_REFUSED_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"expect", b"upgrade"))


class _HotRequest:
    """Just enough of ``web.Request`` for the /get and /set handlers and the
    middlewares in front of them."""

    __slots__ = ("app", "headers", "match_info", "path", "query", "raw_path", "remote")
    method = "GET"
    can_read_body = False
    content_length = None

    def __init__(self, app: web.Application, match_info, url: URL, raw_path: str,
                 headers: CIMultiDictProxy, remote: str | None) -> None:
        self.app = app
        self.match_info = match_info
        self.path = url.path
        self.query = url.query
        self.raw_path = raw_path
        self.headers = headers
        self.remote = remote

    async def read(self) -> bytes:
        return b""


class _DateCache:
    """The Date header changes once a second; format it once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


class HotPathProtocol(asyncio.Protocol):
    """One connection; see the module docstring."""

    def __init__(self, site: "HotPathSite") -> None:
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = b""
        self._busy = False
        self._paused = False
        self._closed = False
        self._eof = False
        self._remote: str | None = None
        self.last_active = time.monotonic()

    # -- asyncio.Protocol

    def connection_made(self, transport) -> None:
        # once per connection: on Python 3.11 each get_running_loop() is a getpid() syscall
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if peer else None
        self._site.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self._buf = self._buf + data if self._buf else data
        if not self._busy:
            self._process()
        elif len(self._buf) > _MAX_HEAD and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        # A client may half-close after its last request: answer it first.
        self._eof = True
        return self._busy

    def connection_lost(self, exc) -> None:
        self._closed = True
        self._site.connections.discard(self)

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.close()

    def idle_for(self, now: float) -> float:
        return 0.0 if self._busy else now - self.last_active

    # -- framing

    def _process(self) -> None:
        """Start on the request at the head of the buffer, if it is whole."""
        buf = self._buf
        if not buf or self._closed:
            return
        if not buf.startswith(_HOT_PREFIXES):
            if len(buf) >= _PREFIX_LEN or not any(p.startswith(buf) for p in _HOT_PREFIXES):
                self._hand_over()
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._hand_over()
            return
        request = self._parse(buf[:end])
        if request is None:
            self._hand_over()
            return
        self._buf = buf[end + 4:]
        self._busy = True
        self._loop.create_task(self._serve(*request))

    def _parse(self, head: bytes):
        """(request, handler, keep_alive) for a head this path serves, else None."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return None
        target = parts[1]
        if not _PLAIN_TARGET.fullmatch(target) or _UNUSUAL_TARGET.search(target):
            return None
        keep_alive = True
        headers = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or not value.isascii():
                return None
            lname = name.lower()
            value = value.strip()
            if lname in _REFUSED_HEADERS and (lname != b"content-length" or value != b"0"):
                return None
            if lname == b"connection" and b"close" in value.lower():
                keep_alive = False
            headers.add(name.decode("ascii"), value.decode("ascii"))
        raw_path = target.decode("ascii")
        try:
            url = URL(raw_path, encoded=True)
            url.query  # noqa: B018 - decoded now, so a bad one hands over
        except (ValueError, UnicodeError):
            return None
        route = self._site.routes.get(url.path)
        if route is None:
            return None
        handler, match_info = route
        request = _HotRequest(self._site.app, match_info, url, raw_path, CIMultiDictProxy(headers),
                              self._remote)
        return request, handler, keep_alive

    async def _serve(self, request: _HotRequest, handler, keep_alive: bool) -> None:
        try:
            response = await handler(request)
            data = self._site.serialize(response, keep_alive)
        except Exception as exc:  # the middlewares answer every error; this is a bug
            hclog.emit("ERROR", "http", "internal error serving request",
                       [("path", request.path), ("error", f"{type(exc).__name__}: {exc}")])
            data = self._site.serialize(web.json_response({"error": "internal error"}, status=500), False)
            keep_alive = False
        if self._closed:
            return
        self._transport.write(data)
        self.last_active = time.monotonic()
        if not keep_alive or self._eof:
            self._transport.close()
            return
        self._busy = False
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        if self._buf:
            self._process()

    def _hand_over(self) -> None:
        """Give the connection, and the bytes from the current request on,
        to aiohttp."""
        self._site.connections.discard(self)
        transport, data = self._transport, self._buf
        self._buf = b""
        self._closed = True  # for this protocol: it no longer owns the transport
        protocol = self._site.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:
            transport.resume_reading()
        if data:
            protocol.data_received(data)


class HotPathSite(web.TCPSite):
    """A TCP site whose connections start on the hot path. The handlers and
    middlewares it runs are the app's own: the GET routes of its router for
    the hot paths, wrapped in ``app.middlewares`` as aiohttp wraps them."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, **kwargs) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.app = app = runner.app
        self.connections: set[HotPathProtocol] = set()
        self.routes = {}
        for resource in app.router.resources():
            if resource.canonical not in _HOT_PATHS:
                continue
            for route in resource:
                if route.method == "GET":
                    handler = route.handler
                    for middleware in reversed(app.middlewares):
                        handler = functools.partial(middleware, handler=handler)
                    self.routes[resource.canonical] = (handler, SimpleNamespace(route=route))
        self._date = _DateCache()
        self._sweeper: asyncio.Task | None = None
        self._server_header = ("Python/%d.%d aiohttp/%s" % (sys.version_info[0], sys.version_info[1],
                                                             aiohttp_version)).encode("ascii")

    def fallback(self):
        return self._runner.server()

    def serialize(self, response: web.Response, keep_alive: bool) -> bytes:
        body = response.body or b""
        if not isinstance(body, (bytes, bytearray)):
            body = bytes(body)
        head = ["HTTP/1.1 %d %s" % (response.status, response.reason)]
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection", "date", "server"):
                head.append(f"{name}: {value}")
        head.append("Content-Length: %d" % len(body))
        if not keep_alive:
            head.append("Connection: close")
        return b"".join(("\r\n".join(head).encode("utf-8"), b"\r\nDate: ", self._date(),
                         b"\r\nServer: ", self._server_header, b"\r\n\r\n", body))

    async def start(self) -> None:
        # BaseSite.start registers the site with the runner; TCPSite.start
        # would then listen with aiohttp's own protocol, so it is skipped.
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HotPathProtocol(self), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._sweeper = loop.create_task(self._close_idle(), name="raftkv-http-idle")

    async def _close_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_TIMEOUT / 5)
            now = time.monotonic()
            for connection in list(self.connections):
                if connection.idle_for(now) > IDLE_TIMEOUT:
                    connection.close()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close()
        await super().stop()
