"""The HTTP fast path: the data-plane routes served straight off an HTTP/1.1
parser, everything else handed to aiohttp.

Theory of operation
-------------------
A read or a write is a few microseconds of Raft and key-value work wrapped in
tens of microseconds of HTTP serving when aiohttp builds its request and
response objects, routes and runs middlewares. So every connection to the HTTP
port starts on :class:`FastPath`'s protocol, which parses requests with
httptools (llhttp, the parser uvicorn and aiohttp's own C parser use) and
serves the routes it was given -- the rows of :mod:`raftkv.http.routes`
marked ``fast``: ``GET /get``, ``GET /set`` -- by calling the route's
function ``fn(call)`` with the request as a
:class:`~raftkv.http.api.context.Call` and writing its answer in one
``transport.write``. The function returns the :class:`Reply` itself when it
can answer at once (a stale read: no task, no callback), or a
:class:`Pending` one when the answer waits: on the node (a write to commit,
a read-index round: it is written when resolved, from a callback), or on a
coroutine (forwarding to the leader: it runs as a task). Per request, a task
and a coroutine chain cost more than the read itself.

The first request that is anything else (another route or method, a body,
HTTP/1.0, ``Upgrade``/``Expect``, a target with a fragment, ``;`` or a bad
percent escape) hands the connection over for good: the fallback's protocol
(raftkv's subclass of aiohttp's request handler in production) is attached
with the public ``connection_made`` / ``data_received`` calls, behind a
:class:`~raftkv.http.server.relay.Relay` set with ``transport.set_protocol``, and fed the bytes from
the start of that request on. Requests are answered one at a time and in
order, so at that moment every earlier answer has been written and nothing is
lost or reordered. An absolute-form target (``GET http://host/get?key=k``,
RFC 9112 3.2.2) is served as its path and query.

Framing: the parser is only ever fed bytes up to the end of the current
request's head (the first blank line). llhttp insists on CRLF line endings,
so a head without a body ends exactly there, and whatever follows in the
buffer -- a pipelined request, or the body of one being handed over -- is
still ours to give to the next request or to aiohttp.

Only the headers the routes need are kept (``wanted_headers``); the others
are looked at once, by lowercased name, and dropped.

Limits (the port faces anyone, so every connection is bounded in bytes and
time, and every refusal is a JSON answer naming the problem):

* at most ``max_connections`` at once (503 to the next, then closed);
* a request head (request line and headers) of at most ``max_head`` bytes
  and ``max_headers`` header lines (431, then closed), complete at most
  ``head_timeout`` seconds after its first byte arrived, however slowly the
  bytes trickle (408, then closed);
* a connection idle for ``idle_timeout`` seconds is closed;
* a query or a header a route reads that is not UTF-8 is a 400 naming it
  (``errors``), never a decoding with U+FFFD in it.

A connection handed over stays behind a :class:`~raftkv.http.server.relay.Relay`, which holds the
same limits for its later requests: it watches the request framing with a
second llhttp parser that sees only where messages begin and end, and passes
the bytes on to the fallback's protocol untouched.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from types import MappingProxyType
from typing import Any

import httptools
import structlog

from ..api.context import Call
from ..api.params import BadRequest, parse_query
from ..api.replies import Pending, Reply
from .relay import Linger, Relay

__all__ = ["DEFAULT_WANTED_HEADERS", "HEAD_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONNECTIONS", "MAX_HEAD", "MAX_HEADERS",
           "FastPath"]

# The defaults of HTTP_MAX_HEAD_BYTES, HTTP_MAX_HEADERS, HTTP_HEAD_TIMEOUT,
# HTTP_IDLE_TIMEOUT and HTTP_MAX_CONNECTIONS (raftkv.config).
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0
# longer than HTTP clients keep an idle pooled connection (aiohttp's 15 s),
# so that a client never sends on a connection the server is closing
IDLE_TIMEOUT = 75.0
MAX_CONNECTIONS = 1024
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
_HTTP_SCHEMES = (b"http", b"https", b"HTTP", b"HTTPS")


@dataclass(frozen=True, slots=True)
class _Route:
    fn: Callable[[Call], Reply | Pending]
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
    ``("GET", "/get")`` -- to ``fn(call)`` returning a :class:`Reply` or a
    :class:`Pending` one (module docstring). The call's ``headers`` hold
    only the wanted headers that were sent, by lowercased name (the first of
    repeated ones, as ``request.headers.get`` in aiohttp); its ``raw_path``
    is the target as sent (``/get?key=a%20b``), what a follower forwards to
    the leader; ``remote`` the peer's IP address.
    ``fallback()`` returns a fresh protocol that takes a connection over
    (``aiohttp.web.Server(handler)``). ``observe(route, method, status,
    seconds)`` is called once per request served here. ``headers`` go on
    every answer, as do ``Server`` (``server_name``) and ``Date``.
    ``max_head``, ``max_headers``, ``head_timeout``, ``idle_timeout`` and
    ``max_connections`` (None: no cap) are the limits of the module
    docstring. ``errors(exc)`` is the answer for what a route failed with,
    or None for a bug (answered 500 and logged); it also answers a request
    refused before its route runs (a
    :class:`~raftkv.http.api.params.BadRequest`: a query or header that is
    not UTF-8), by default a 400 naming the parameter. ``served_by`` (a node id) goes on the answers the fast path
    makes itself, as ``X-Raftkv-Served-By`` and ``served_by``, as on the
    routes' own. ``log`` is a structlog-style logger (``warning``, ``error``)."""

    def __init__(self, routes: Mapping[tuple[bytes | str, str], Callable[[Call], Reply | Pending]],
                 fallback: Callable[[], asyncio.Protocol], *,
                 observe: Callable[[str, str, int, float], None] | None = None,
                 headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 server_name: str | None = None,
                 wanted_headers: Iterable[str] = DEFAULT_WANTED_HEADERS,
                 max_head: int = MAX_HEAD,
                 max_headers: int = MAX_HEADERS,
                 head_timeout: float = HEAD_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int | None = MAX_CONNECTIONS,
                 errors: Callable[[BaseException], Reply | None] | None = None,
                 served_by: str | None = None,
                 log: Any = None) -> None:
        self.fallback = fallback
        self.served_by = served_by
        self.observe = observe
        self.max_head = max_head
        self.max_headers = max_headers
        # a head with more header lines than this has more than 4 bytes per
        # line ("a:\r\n"), so shorter heads are never counted
        self._count_lines_from = 4 * max_headers
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections or None
        self.errors = errors
        self.log = log if log is not None else structlog.get_logger("http")
        self.connections: set[FastPathProtocol] = set()
        self.open_connections = 0  # served here or relayed to the fallback
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
        if self.served_by is None:
            return Reply(status, (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8"))
        body["served_by"] = self.served_by
        return Reply(status, (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8"),
                     headers=(("X-Raftkv-Served-By", self.served_by),))

    def failed(self, route: _Route, exc: BaseException) -> Reply:
        """The answer for what a route failed with."""
        reply = self.errors(exc) if self.errors is not None else None
        return reply if reply is not None else self.internal_error(route, exc)

    def refused(self, exc: BadRequest) -> Reply:
        """The answer for a request refused before its route runs."""
        reply = self.errors(exc) if self.errors is not None else None
        return reply if reply is not None else self.error_reply(400, exc.message, exc.param)

    # -- the limits' refusals, one wording for both protocols

    def head_too_large(self) -> tuple[int, str]:
        return 431, (f"request head over the limit of {self.max_head} bytes (HTTP_MAX_HEAD_BYTES): request line "
                     f"and headers together; send large values in the body of a POST")

    def too_many_headers(self) -> tuple[int, str]:
        return 431, f"more than {self.max_headers} header fields (HTTP_MAX_HEADERS)"

    def head_too_slow(self) -> tuple[int, str]:
        return 408, f"request head not complete {self.head_timeout:g}s after it began (HTTP_HEAD_TIMEOUT)"

    def too_many_connections(self) -> tuple[int, str]:
        return 503, f"too many connections (HTTP_MAX_CONNECTIONS={self.max_connections})"

    def refusal(self, status: int, error: str, param: str | None = "request") -> bytes:
        """A whole answer that ends the connection."""
        if len(error) > 300:
            error = error[:300] + "..."
        return self.render(self.error_reply(status, error, param), keep_alive=False)

    def close_with(self, transport: asyncio.Transport, data: bytes,
                   then: Callable[[BaseException | None], None] | None = None, half_close: bool = True) -> None:
        """Write the last answer of a connection and close it, lingering
        (:data:`~raftkv.http.server.relay.LINGER`) over what the client may still be sending (with
        ``half_close``, after shutting the write side); ``then(exc)`` once
        it is closed."""
        if not transport.is_closing():
            transport.write(data)
            if transport.can_write_eof():  # not TLS: there is no half-close to linger in
                if half_close:
                    transport.write_eof()
                transport.set_protocol(Linger(transport, self.loop, then))
                return
            transport.close()
        if then is not None:
            then(None)


class _Waiting:
    """Answers on its connection once a route's :class:`Pending` is resolved."""

    __slots__ = ("connection", "route", "keep_alive", "t0")

    def __init__(self, connection: "FastPathProtocol", route: _Route, keep_alive: bool, t0: float) -> None:
        self.connection, self.route, self.keep_alive, self.t0 = connection, route, keep_alive, t0

    def __call__(self, outcome: Reply | BaseException) -> None:
        connection, route = self.connection, self.route
        connection._waiting = None
        if outcome.__class__ is not Reply:
            outcome = connection._site.failed(route, outcome)
        connection._finish(route, outcome, self.keep_alive, self.t0, resume=True)


class FastPathProtocol(asyncio.Protocol):
    """One connection, until it is closed or handed over."""

    __slots__ = ("_bad", "_buf", "_busy", "_counted", "_eof", "_fed", "_framing_ok", "_head_done", "_head_started",
                 "_headers", "_keep_alive", "_last_active", "_loop", "_message_done", "_parser", "_query",
                 "_read_paused", "_remote", "_route", "_scanned", "_site", "_target", "_timer", "_timer_due",
                 "_transport", "_url", "_waiting", "_write_resumed")

    def __init__(self, site: FastPath) -> None:
        self._site = site
        self._parser = httptools.HttpRequestParser(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None  # None once closed or handed over
        self._remote: str | None = None
        self._counted = False   # in site.open_connections until it is lost
        self._buf: bytes | bytearray = b""  # from the start of the current request on
        self._fed = 0           # bytes of _buf the parser has seen
        self._scanned = 0       # _buf holds no blank line before this offset
        self._busy = False      # a request is being answered
        self._eof = False
        self._read_paused = False
        self._write_resumed: asyncio.Future | None = None  # set while the transport's buffer is full
        self._waiting: Pending | None = None  # the answer being waited for (it holds its task, if any)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._last_active = 0.0
        self._head_started = 0.0  # when the first byte of the head in _buf arrived
        self._reset_request()

    def _reset_request(self) -> None:
        self._url: bytes | bytearray = b""
        self._target: bytes | None = None  # the origin-form of an absolute-form target
        self._headers: dict[str, str] | None = None
        self._bad: BadRequest | None = None
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
        site = self._site
        if site.loop is None:
            site.loop = loop
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple) and peer else None
        if site.max_connections is not None and site.open_connections >= site.max_connections:
            # answered before the client says anything: it learns why, and
            # the connection costs nothing more than this write
            status, error = site.too_many_connections()
            site.log.warning("refused connection", remote=self._remote or "", error=error)
            self._parser = None
            site.close_with(transport, site.refusal(status, error, None))
            return
        self._transport = transport
        self._counted = True
        site.open_connections += 1
        site.connections.add(self)
        self._last_active = loop.time()
        self._schedule(self._last_active + site.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._last_active = now = self._loop.time()
        buf = self._buf
        if buf:
            # a head arriving in pieces: extended in place, not copied per piece
            if buf.__class__ is bytes:
                buf = self._buf = bytearray(buf)
            buf += data
        else:
            self._buf = data
            self._head_started = now
        if not self._busy:
            self._advance()
            if self._buf and not self._busy and self._transport is not None:
                # a head still incomplete: its deadline, unless the timer comes sooner
                due = self._head_started + self._site.head_timeout
                if due < self._timer_due:
                    self._schedule(due)
        elif len(self._buf) > _PAUSE_AT and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        # A client may half-close after its last requests: answer them first,
        # then close (after the answers still queued for this round).
        self._eof = True
        if self._transport is not None and not self._busy:
            self._site.write_soon(self._transport, b"", close=True)
        return True

    def pause_writing(self) -> None:
        if self._write_resumed is None:
            self._write_resumed = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._write_resumed = self._write_resumed, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc) -> None:
        self._detach()
        if self._counted:
            self._counted = False
            self._site.open_connections -= 1
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

    # -- timeouts: idle keep-alive connections, heads that do not complete

    def _schedule(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._loop.call_at(due, self._check_time)

    def _check_time(self) -> None:
        # One timer per connection, moved only when it fires or a head is
        # left incomplete: activity just stores a timestamp.
        self._timer = None
        if self._transport is None:
            return
        site = self._site
        now = self._loop.time()
        if self._busy:
            due = now + site.idle_timeout
        elif self._buf:
            due = self._head_started + site.head_timeout
            if now >= due:
                self._reject(*site.head_too_slow())
                return
        else:
            due = self._last_active + site.idle_timeout
            if now >= due:
                self._transport.close()
                return
        self._schedule(due)

    # -- httptools callbacks (only ever fed the current request's head; the
    # per-request state is reset once that request is taken off the buffer)

    def on_url(self, url: bytes) -> None:
        if not self._url:
            self._url = url
        else:
            if self._url.__class__ is bytes:
                self._url = bytearray(self._url)
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
                try:
                    headers[kind] = value.decode("utf-8")
                except UnicodeDecodeError:
                    if self._bad is None:
                        # named as aiohttp's routes name it (routes.check_input)
                        shown = "-".join(part.capitalize() for part in kind.split("-"))
                        self._bad = BadRequest(shown, f"header {shown} is not valid UTF-8")
        elif kind == _NOT_OURS or value.strip() != b"0":
            self._framing_ok = False

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._head_done = True
        self._keep_alive = parser.should_keep_alive()
        if not self._framing_ok or parser.should_upgrade() or parser.get_http_version() != "1.1":
            return
        target = self._url
        if target.__class__ is bytearray:
            target = self._url = bytes(target)
        if not target.isascii() or b";" in target or (b"%" in target and _BAD_PERCENT.search(target)):
            return
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            return
        if url.fragment is not None:
            return
        if url.schema is not None:
            # absolute-form (RFC 9112 3.2.2: a server must accept it): served
            # as its path and query, which is all a node forwards
            if url.schema not in _HTTP_SCHEMES or not url.path:
                return
            self._target = url.path + b"?" + url.query if url.query is not None else url.path
        by_method = self._site.routes.get(url.path)
        if by_method is None:
            return
        route = by_method.get(parser.get_method())
        if route is None:
            return
        self._route = route
        try:
            self._query = parse_query(url.query)
        except BadRequest as exc:
            if self._bad is None:
                self._bad = exc

    def on_message_complete(self) -> None:
        self._message_done = True

    # -- framing

    def _advance(self) -> None:
        """Feed the parser up to the end of the current request's head, then
        serve, hand over or wait for more bytes."""
        site = self._site
        while self._transport is not None and not self._busy:
            buf = self._buf
            size = len(buf)
            fed = self._fed
            if fed >= size:
                break
            end = buf.find(b"\r\n\r\n", max(fed - 3, self._scanned))
            if end < 0:
                if size > site.max_head:
                    self._reject(*site.head_too_large())
                    return
                self._scanned = max(size - 3, 0)
                if fed and size - fed < fed:
                    # a head arriving in pieces is fed as its size doubles:
                    # what the parser gathers of a header is copied once per
                    # feed, so feeding every piece would cost the square
                    break
                stop = size
            else:
                stop = end + 4
                if stop > site.max_head:
                    self._reject(*site.head_too_large())
                    return
                if stop > site._count_lines_from and buf.count(b"\n", 0, stop) > site.max_headers + 2:
                    self._reject(*site.too_many_headers())
                    return
            self._fed = stop
            try:
                if buf.__class__ is bytes:
                    self._parser.feed_data(buf if fed == 0 and stop == size else memoryview(buf)[fed:stop])
                else:
                    self._parser.feed_data(bytes(buf[fed:stop]))  # no view: the bytearray grows
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
        route, query, keep_alive, bad = self._route, self._query, self._keep_alive, self._bad
        target = self._target if self._target is not None else self._url
        call = Call(route.method, target.decode("ascii"), query, self._headers or _NO_HEADERS, self._remote)
        buf = self._buf
        self._buf = buf[head_end:] if head_end < len(buf) else b""
        self._fed = self._scanned = 0
        self._reset_request()
        self._busy = True
        t0 = time.perf_counter()
        try:
            result = route.fn(call) if bad is None else self._site.refused(bad)
        except Exception as exc:
            result = self._site.failed(route, exc)
        if result.__class__ is Reply:
            # answered at once (a stale read, a refusal): no task, no callback
            self._finish(route, result, keep_alive, t0, resume=False)
        elif result.__class__ is Pending:
            self._waiting = result
            result.then(_Waiting(self, route, keep_alive, t0))
        else:
            bug = TypeError(f"the route answered a {type(result).__name__}, not a Reply or a Pending")
            self._finish(route, self._site.internal_error(route, bug), keep_alive, t0, resume=False)

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
        if self._buf:
            # what is buffered of the next head had to wait for this answer
            self._head_started = self._loop.time()
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        if resume:
            self._advance()
            if self._buf and not self._busy and self._transport is not None:
                due = self._head_started + self._site.head_timeout
                if due < self._timer_due:
                    self._schedule(due)

    def _reject(self, status: int, error: str) -> None:
        """Answer a request that cannot be parsed or breaks a limit, and
        close: nothing after it can be framed."""
        site = self._site
        if len(error) > 300:
            error = error[:300] + "..."
        site.log.warning("unparseable request" if status == 400 else "refused request", remote=self._remote or "",
                         status=status, error=error)
        transport = self._transport
        self._detach()
        if self._counted:
            self._counted = False
            site.open_connections -= 1
        self._parser = None
        site.flush()  # this connection's earlier answers go first
        site.close_with(transport, site.refusal(status, error))

    def _hand_over(self) -> None:
        """Give the connection, and the bytes from the current request on, to
        the fallback, behind a :class:`~raftkv.http.server.relay.Relay` that holds the port's limits."""
        site = self._site
        transport, data = self._transport, self._buf
        site.flush()  # this connection's earlier answers go first
        self._detach()
        self._buf = b""
        self._parser = None
        try:
            protocol = site.fallback()
        except Exception as exc:
            site.log.error("no protocol to hand a connection to", error=f"{type(exc).__name__}: {exc}")
            transport.close()
            return
        self._counted = False  # the relay's now
        relay = Relay(site, protocol, transport, self._remote)
        protocol.connection_made(transport)
        transport.set_protocol(relay)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        if data:
            relay.data_received(bytes(data) if data.__class__ is bytearray else data)
        if self._eof and relay.is_open() and not relay.eof_received():
            transport.close()
