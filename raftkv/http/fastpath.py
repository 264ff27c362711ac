"""The HTTP fast path: the data-plane routes served straight off an HTTP/1.1
parser, everything else handed to aiohttp.

Theory of operation
-------------------
A read or a write is a few microseconds of Raft and key-value work wrapped in
tens of microseconds of HTTP serving when aiohttp builds its request and
response objects, routes and runs middlewares. So every connection to the HTTP
port starts on :class:`FastPath`'s protocol, which parses requests with
httptools (llhttp, the parser uvicorn and aiohttp's own C parser use) and
serves the routes it was given -- ``GET /get``, ``GET /set`` -- by calling a
plain data-plane function ``fn(query, request)`` and writing its answer in one
``transport.write``. The function returns the :class:`Reply` itself when it
can answer at once (a stale read: no task, no callback), a :class:`Pending`
one when the answer waits on the node (a write to commit, a read-index
round: it is written when resolved), or a coroutine for anything longer
(forwarding to the leader: it runs as a task).
Per request, a task and a coroutine chain cost more than the read itself.

The first request that is anything else (another route or method, a body,
HTTP/1.0, ``Upgrade``/``Expect``, a target with a fragment, ``;`` or a bad
percent escape, a query that is not UTF-8) hands the connection over for
good: the fallback's protocol (an ``aiohttp.web.Server``'s request handler in
production) is attached with the public ``connection_made`` /
``transport.set_protocol`` / ``data_received`` calls and fed the bytes from
the start of that request on. Requests are answered one at a time and in
order, so at that moment every earlier answer has been written and nothing is
lost or reordered.

Framing: the parser is only ever fed bytes up to the end of the current
request's head (the first blank line). llhttp insists on CRLF line endings,
so a head without a body ends exactly there, and whatever follows in the
buffer -- a pipelined request, or the body of one being handed over -- is
still ours to give to the next request or to aiohttp.

Only the headers the routes need are kept (``wanted_headers``); the others
are looked at once, by lowercased name, and dropped.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

import httptools
import structlog

__all__ = ["DEFAULT_WANTED_HEADERS", "IDLE_TIMEOUT", "JSON_TYPE", "MAX_HEAD", "FastPath", "FastRequest",
           "Pending", "Reply"]

JSON_TYPE = "application/json; charset=utf-8"
MAX_HEAD = 64 * 1024
# aiohttp's keepalive_timeout: an idle keep-alive connection is closed after it.
IDLE_TIMEOUT = 75.0
DEFAULT_WANTED_HEADERS = ("authorization", "x-raftkv-forwarded-by", "x-forwarded-for")
# While a request is being answered, read no further than this ahead.
_PAUSE_AT = 64 * 1024
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# What a header means to the framing, by lowercased name.
_HAS_BODY_IF_NONZERO = 1
_NOT_OURS = 2
_FRAMING_HEADERS = {b"content-length": _HAS_BODY_IF_NONZERO, b"transfer-encoding": _NOT_OURS,
                    b"expect": _NOT_OURS, b"upgrade": _NOT_OURS}
_RESPONSE = b"%s%s%s%s%sContent-Length: %d\r\n%s\r\n%s"


@dataclass(frozen=True, slots=True)
class Reply:
    """A data-plane answer. ``headers`` are extra ones, as ``(name, value)``
    pairs or a mapping, on top of the factory's common headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class FastRequest:
    """What a data-plane function gets besides the query.

    ``headers`` holds only the wanted headers that were sent, by lowercased
    name (the first of repeated ones, as ``request.headers.get`` in aiohttp);
    ``target`` is the request target as sent (``/get?key=a%20b``), what a
    follower forwards to the leader; ``remote`` the peer's IP address."""

    method: str
    path: str
    target: str
    headers: Mapping[str, str]
    remote: str | None


@dataclass(frozen=True, slots=True)
class _Route:
    fn: Callable[[dict[str, str], FastRequest], "Reply | Pending | Awaitable[Reply]"]
    method: str
    path: str


def _aiohttp_server_name() -> str:
    """What aiohttp puts in ``Server``, so both paths answer alike."""
    try:
        from aiohttp import __version__ as aiohttp_version
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return "Python/%d.%d" % sys.version_info[:2]
    return "Python/%d.%d aiohttp/%s" % (sys.version_info[0], sys.version_info[1], aiohttp_version)


def _header_line(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
        raise ValueError(f"header {name!r} has a line break or colon")
    return f"{name}: {value}\r\n".encode("utf-8")


class FastPath:
    """The protocol factory for the HTTP port: ``loop.create_server(fast_path,
    host, port)``. See the module docstring.

    ``routes`` maps ``(method, path)`` -- ``(b"GET", "/get")`` or
    ``("GET", "/get")`` -- to ``fn(query, request)`` returning a
    :class:`Reply`, a :class:`Pending` one, or a coroutine (module
    docstring).
    ``fallback()`` returns a fresh protocol that takes a connection over
    (``aiohttp.web.Server(handler)``). ``observe(route, method, status,
    seconds)`` is called once per request served here. ``headers`` go on
    every answer, as do ``Server`` (``server_name``) and ``Date``.
    ``max_head`` bounds a request head (request line included): over it the
    answer is 413. ``log`` is a structlog-style logger (``warning``, ``error``)."""

    def __init__(self, routes: Mapping[tuple[bytes | str, str], Callable[..., "Reply | Pending | Awaitable[Reply]"]],
                 fallback: Callable[[], asyncio.Protocol], *,
                 observe: Callable[[str, str, int, float], None] | None = None,
                 headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 server_name: str | None = None,
                 wanted_headers: Iterable[str] = DEFAULT_WANTED_HEADERS,
                 max_head: int = MAX_HEAD,
                 idle_timeout: float = IDLE_TIMEOUT,
                 log: Any = None) -> None:
        self.fallback = fallback
        self.observe = observe
        self.max_head = max_head
        self.idle_timeout = idle_timeout
        self.log = log if log is not None else structlog.get_logger("http")
        self.connections: set[FastPathProtocol] = set()
        # path -> method -> route: one lookup per request, no key tuple built
        self.routes: dict[bytes, dict[bytes, _Route]] = {}
        for (method, path), fn in routes.items():
            name = method.decode("ascii") if isinstance(method, bytes) else method
            name = name.upper()
            if name == "HEAD":
                raise ValueError("HEAD is left to the fallback: its answer has no body")
            if not path.startswith("/"):
                raise ValueError(f"route path {path!r} does not start with '/'")
            by_method = self.routes.setdefault(path.encode("ascii"), {})
            by_method[name.encode("ascii")] = _Route(fn, name, path)
        self.header_kinds: dict[bytes, Any] = dict(_FRAMING_HEADERS)
        for name in wanted_headers:
            lname = name.lower()
            if lname.encode("ascii") in _FRAMING_HEADERS:
                raise ValueError(f"{name} decides the framing; it is not passed to routes")
            self.header_kinds[lname.encode("ascii")] = lname
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        self._common = _header_line("Server", server_name or _aiohttp_server_name()) + b"".join(
            _header_line(n, v) for n, v in pairs)
        self._status_lines: dict[int, bytes] = {}
        self._type_lines: dict[str, bytes] = {}
        self._extra_lines: dict[tuple, bytes] = {}
        self._unsent: list[tuple[asyncio.Transport, bytes, bool]] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # its connections' (set by the first)
        self._date_second = -1
        self._date_line = b""

    def __call__(self) -> FastPathProtocol:
        return FastPathProtocol(self)

    def write_soon(self, transport: asyncio.Transport, data: bytes, close: bool = False) -> None:
        """Write ``data`` once this round of the event loop has read what
        arrived. Answers written in a burst wake the client once: writing
        each as soon as its request is parsed costs a wake-up of the reader
        per answer (measured: a fifth of the node's CPU on loopback).
        ``close``: close the connection after it."""
        if not self._unsent:
            self.loop.call_soon(self.flush)
        self._unsent.append((transport, data, close))

    def flush(self) -> None:
        """Write every answer waiting for :meth:`write_soon`, in order."""
        unsent, self._unsent = self._unsent, []
        for transport, data, close in unsent:
            if not transport.is_closing():
                transport.write(data)
                if close:
                    transport.close()

    def close(self) -> None:
        """Close every connection still served here (those handed over
        belong to the fallback's server)."""
        for connection in list(self.connections):
            connection.close()

    # -- answers

    def render(self, reply: Reply, keep_alive: bool) -> bytes:
        """The whole answer: status line, headers, body."""
        status_line = self._status_lines.get(reply.status)
        if status_line is None:
            status_line = self._status_line(reply.status)
        type_line = self._type_lines.get(reply.content_type)
        if type_line is None:
            type_line = self._type_lines[reply.content_type] = _header_line("Content-Type", reply.content_type)
        extra = reply.headers
        if extra:
            if extra.__class__ is tuple:
                lines = self._extra_lines.get(extra)
                if lines is None:
                    lines = b"".join(_header_line(n, v) for n, v in extra)
                    if len(self._extra_lines) < 256:  # the same few (served-by) over and over
                        self._extra_lines[extra] = lines
                extra = lines
            else:
                pairs = extra.items() if isinstance(extra, Mapping) else extra
                extra = b"".join(_header_line(n, v) for n, v in pairs)
        else:
            extra = b""
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date_line = b"Date: %s\r\n" % formatdate(second, usegmt=True).encode("ascii")
        body = reply.body
        return _RESPONSE % (status_line, self._common, self._date_line, type_line, extra, len(body),
                            b"" if keep_alive else b"Connection: close\r\n", body)

    def _status_line(self, status: int) -> bytes:
        if not 100 <= status <= 999:
            raise ValueError(f"bad HTTP status {status}")
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        line = self._status_lines[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("ascii"))
        return line

    def internal_error(self, route: _Route, exc: BaseException) -> Reply:
        """A route failed with an exception it does not answer itself: a bug."""
        self.log.error("internal error serving request", method=route.method, path=route.path,
                       error=f"{type(exc).__name__}: {exc}",
                       trace="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return self.error_reply(500, f"internal error: {type(exc).__name__}")

    def error_reply(self, status: int, error: str, param: str | None = None) -> Reply:
        body: dict[str, Any] = {"error": error}
        if param is not None:
            body["param"] = param
        return Reply(status, (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8"))


def _decode_query(query: bytes | None) -> dict[str, str] | None:
    """The query as aiohttp decodes it (UTF-8, ``+`` a space, the first of
    repeated names wins as in ``request.query.get``), or None when it is not
    UTF-8 and aiohttp's own rules should decide."""
    if not query:
        return {}
    if b"%" not in query and b"+" not in query:
        # nothing to unquote: what parse_qsl returns, without its per-pair work
        decoded = {}
        for pair in query.decode("ascii").split("&"):
            if pair:
                name, _, value = pair.partition("=")
                decoded.setdefault(name, value)
        return decoded
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeError:
        return None
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        decoded = {}
        for name, value in pairs:
            decoded.setdefault(name, value)
    return decoded


class Pending:
    """An answer the data plane gives later: a route returns one, and calls
    :meth:`resolve` with the :class:`Reply` (or the exception of a bug, which
    is answered 500). Unlike an ``asyncio.Future`` it delivers at once, with
    no turn of the event loop in between."""

    __slots__ = ("_deliver", "_outcome")

    def __init__(self) -> None:
        self._deliver: Callable[[Reply | BaseException], None] | None = None
        self._outcome: Reply | BaseException | None = None

    def resolve(self, outcome: Reply | BaseException) -> None:
        deliver, self._deliver = self._deliver, None
        if deliver is not None:
            deliver(outcome)
        elif self._outcome is None:
            self._outcome = outcome

    def then(self, deliver: Callable[[Reply | BaseException], None]) -> None:
        if self._outcome is not None:
            deliver(self._outcome)
        else:
            self._deliver = deliver


class _Waiting:
    """Answers on its connection once a route's :class:`Pending` is resolved."""

    __slots__ = ("connection", "route", "keep_alive", "t0")

    def __init__(self, connection: "FastPathProtocol", route: _Route, keep_alive: bool, t0: float) -> None:
        self.connection, self.route, self.keep_alive, self.t0 = connection, route, keep_alive, t0

    def __call__(self, outcome: Reply | BaseException) -> None:
        connection, route = self.connection, self.route
        if outcome.__class__ is not Reply:
            outcome = connection._site.internal_error(route, outcome)
        connection._finish(route, outcome, self.keep_alive, self.t0, resume=True)


class FastPathProtocol(asyncio.Protocol):
    """One connection, until it is closed or handed over."""

    __slots__ = ("_buf", "_busy", "_eof", "_fed", "_framing_ok", "_head_done", "_headers", "_keep_alive",
                 "_last_active", "_loop", "_message_done", "_parser", "_query", "_read_paused", "_remote",
                 "_route", "_site", "_task", "_timer", "_transport", "_url", "_write_resumed")

    def __init__(self, site: FastPath) -> None:
        self._site = site
        self._parser = httptools.HttpRequestParser(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None  # None once closed or handed over
        self._remote: str | None = None
        self._buf = b""         # from the start of the current request on
        self._fed = 0           # bytes of _buf the parser has seen
        self._busy = False      # a request is being answered
        self._eof = False
        self._read_paused = False
        self._write_resumed: asyncio.Future | None = None  # set while the transport's buffer is full
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_active = 0.0
        self._reset_request()

    def _reset_request(self) -> None:
        self._url = b""
        self._headers: dict[str, str] | None = None
        self._framing_ok = True
        self._route: _Route | None = None
        self._query: dict[str, str] | None = None
        self._keep_alive = True
        self._head_done = False
        self._message_done = False

    # -- asyncio.Protocol

    def connection_made(self, transport) -> None:
        # once per connection: on Python 3.11 each get_running_loop() is a getpid() syscall
        self._loop = loop = asyncio.get_running_loop()
        if self._site.loop is None:
            self._site.loop = loop
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple) and peer else None
        self._site.connections.add(self)
        self._last_active = loop.time()
        self._timer = loop.call_at(self._last_active + self._site.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._last_active = self._loop.time()
        self._buf = self._buf + data if self._buf else data
        if not self._busy:
            self._advance()
        elif len(self._buf) > _PAUSE_AT and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        # A client may half-close after its last requests: answer them first.
        self._eof = True
        return self._busy

    def pause_writing(self) -> None:
        if self._write_resumed is None:
            self._write_resumed = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._write_resumed = self._write_resumed, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc) -> None:
        self._detach()
        self.resume_writing()
        self._parser = None  # it holds our bound methods: no cycle left behind

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _detach(self) -> None:
        self._transport = None
        self._site.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- idle keep-alive connections

    def _check_idle(self) -> None:
        # One timer per connection, moved only when it fires: activity just
        # stores a timestamp.
        self._timer = None
        if self._transport is None:
            return
        timeout = self._site.idle_timeout
        now = self._loop.time()
        if self._busy:
            due = now + timeout
        else:
            due = self._last_active + timeout
            if now >= due:
                self._transport.close()
                return
        self._timer = self._loop.call_at(due, self._check_idle)

    # -- httptools callbacks (only ever fed the current request's head; the
    # per-request state is reset once that request is taken off the buffer)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = self._site.header_kinds.get(name.lower())
        if kind is None:
            return
        if kind.__class__ is str:
            headers = self._headers
            if headers is None:
                headers = self._headers = {}
            if kind not in headers:
                headers[kind] = value.decode("utf-8", "surrogateescape")
        elif kind == _NOT_OURS or value.strip() != b"0":
            self._framing_ok = False

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._head_done = True
        self._keep_alive = parser.should_keep_alive()
        if not self._framing_ok or parser.should_upgrade() or parser.get_http_version() != "1.1":
            return
        target = self._url
        if not target.isascii() or b";" in target or (b"%" in target and _BAD_PERCENT.search(target)):
            return
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            return
        if url.fragment is not None or url.schema is not None:
            return
        by_method = self._site.routes.get(url.path)
        if by_method is None:
            return
        route = by_method.get(parser.get_method())
        if route is None:
            return
        query = _decode_query(url.query)
        if query is not None:
            self._route, self._query = route, query

    def on_message_complete(self) -> None:
        self._message_done = True

    # -- framing

    def _advance(self) -> None:
        """Feed the parser up to the end of the current request's head, then
        serve, hand over or wait for more bytes."""
        site = self._site
        while self._transport is not None and not self._busy:
            buf = self._buf
            fed = self._fed
            if fed >= len(buf):
                break
            end = buf.find(b"\r\n\r\n", max(fed - 3, 0))
            stop = len(buf) if end < 0 else end + 4
            if stop > site.max_head:
                self._reject(413, f"request head over the limit of {site.max_head} bytes")
                return
            self._fed = stop
            try:
                self._parser.feed_data(buf if fed == 0 and stop == len(buf) else memoryview(buf)[fed:stop])
            except httptools.HttpParserUpgrade:
                self._hand_over()
                return
            except httptools.HttpParserError as exc:
                self._reject(400, str(exc) or type(exc).__name__)
                return
            if self._head_done:
                if self._message_done and self._route is not None:
                    self._start(stop)  # answered at once unless it left us busy
                    continue
                self._hand_over()  # not ours, or a body follows
                return
            if end < 0:
                break
            # only blank lines before a request line were fed: look further
        if self._eof and not self._busy and self._transport is not None:
            self._site.write_soon(self._transport, b"", close=True)  # after the answers still queued

    def _start(self, head_end: int) -> None:
        route, query, keep_alive = self._route, self._query, self._keep_alive
        request = FastRequest(route.method, route.path, self._url.decode("ascii"),
                              self._headers or _NO_HEADERS, self._remote)
        buf = self._buf
        self._buf = buf[head_end:] if head_end < len(buf) else b""
        self._fed = 0
        self._reset_request()
        self._busy = True
        t0 = time.perf_counter()
        try:
            result = route.fn(query, request)
        except Exception as exc:
            result = self._site.internal_error(route, exc)
        if result.__class__ is Reply:
            # answered at once (a stale read, a refusal): no task, no callback
            self._finish(route, result, keep_alive, t0, resume=False)
        elif result.__class__ is Pending:
            result.then(_Waiting(self, route, keep_alive, t0))
        else:
            self._task = self._loop.create_task(self._serve(route, result, keep_alive, t0))

    async def _serve(self, route: _Route, pending: Awaitable[Reply], keep_alive: bool, t0: float) -> None:
        try:
            reply = await pending
        except Exception as exc:
            reply = self._site.internal_error(route, exc)
        self._task = None
        self._finish(route, reply, keep_alive, t0, resume=True)

    def _finish(self, route: _Route, reply: Reply, keep_alive: bool, t0: float, resume: bool) -> None:
        """Write the answer; then, unless the transport's buffer is full, this
        connection may go on to its next request (``resume``: look for it
        now, else the caller's loop in :meth:`_advance` does)."""
        site = self._site
        try:
            data = site.render(reply, keep_alive)
        except Exception as exc:
            reply = site.internal_error(route, exc)
            data = site.render(reply, keep_alive)
        transport = self._transport
        if transport is not None:
            site.write_soon(transport, data, close=not keep_alive)
            self._last_active = self._loop.time()
        if site.observe is not None:
            try:
                site.observe(route.path, route.method, reply.status, time.perf_counter() - t0)
            except Exception as exc:
                site.log.error("observing a request failed", error=f"{type(exc).__name__}: {exc}")
        if transport is None:
            return
        if not keep_alive:
            return  # closed once the answer is written
        if self._write_resumed is not None:
            self._write_resumed.add_done_callback(self._writable_again)
            return
        self._next_request(resume)

    def _writable_again(self, _: asyncio.Future) -> None:
        self._next_request(resume=True)

    def _next_request(self, resume: bool) -> None:
        self._busy = False
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        if resume:
            self._advance()

    def _reject(self, status: int, error: str) -> None:
        """Answer a request that cannot be parsed and close: nothing after it
        can be framed."""
        if len(error) > 200:
            error = error[:200] + "..."
        site = self._site
        site.log.warning("unparseable request", remote=self._remote or "", status=status, error=error)
        transport = self._transport
        self._detach()
        site.write_soon(transport, site.render(site.error_reply(status, error, "request"), keep_alive=False),
                        close=True)

    def _hand_over(self) -> None:
        """Give the connection, and the bytes from the current request on, to
        the fallback."""
        transport, data = self._transport, self._buf
        self._site.flush()  # this connection's earlier answers go first
        self._detach()
        self._buf = b""
        self._parser = None
        try:
            protocol = self._site.fallback()
        except Exception as exc:
            self._site.log.error("no protocol to hand a connection to", error=f"{type(exc).__name__}: {exc}")
            transport.close()
            return
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        if data:
            protocol.data_received(data)
        if self._eof:
            protocol.eof_received()
