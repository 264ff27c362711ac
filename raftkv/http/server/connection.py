"""One connection on the fast path (:class:`FastPathProtocol`): its framing,
its timeouts, the fast routes it serves and its hand-over to aiohttp. The
module docstring of :mod:`raftkv.http.server.fastpath` tells how.

``site`` is the :class:`~raftkv.http.server.fastpath.FastPath` whose port
the connection came to: its routes, limits, answers and log.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import httptools

from ..api.context import Call
from ..api.params import BadRequest, parse_query
from ..api.replies import Pending, Reply
from .relay import Relay

__all__ = ["FRAMING_HEADERS", "FastPathProtocol", "FastRoute"]

# While a request is being answered, read no further than this ahead.
_PAUSE_AT = 64 * 1024
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# What a header means to the framing, by lowercased name.
_HAS_BODY_IF_NONZERO = 1
_NOT_OURS = 2
FRAMING_HEADERS = {b"content-length": _HAS_BODY_IF_NONZERO, b"transfer-encoding": _NOT_OURS,
                   b"expect": _NOT_OURS, b"upgrade": _NOT_OURS}
_HTTP_SCHEMES = (b"http", b"https", b"HTTP", b"HTTPS")


@dataclass(frozen=True, slots=True)
class FastRoute:
    fn: Callable[[Call], Reply | Pending]
    method: str
    path: str


class _Waiting:
    """Answers on its connection once a route's :class:`Pending` is resolved."""

    __slots__ = ("connection", "route", "keep_alive", "t0")

    def __init__(self, connection: "FastPathProtocol", route: FastRoute, keep_alive: bool, t0: float) -> None:
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

    def __init__(self, site) -> None:
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
        self._route: FastRoute | None = None
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

    def _finish(self, route: FastRoute, reply: Reply, keep_alive: bool, t0: float, resume: bool) -> None:
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
