"""The HTTP fast path: the data-plane routes served straight off an HTTP/1.1
parser, everything else handed to aiohttp.

Theory of operation
-------------------
A read or a write is a few microseconds of Raft and key-value work wrapped in
tens of microseconds of HTTP serving when aiohttp builds its request and
response objects, routes and runs middlewares. So every connection to the HTTP
port starts on :class:`FastPath`'s protocol (:class:`~.connection.FastPathProtocol`,
in connection.py), which parses requests with
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
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from email.utils import formatdate
from typing import Any

import structlog

from ..api.context import Call
from ..api.params import BadRequest
from ..api.replies import Pending, Reply
from .connection import FRAMING_HEADERS, FastPathProtocol, FastRoute
from .relay import Linger

__all__ = ["DEFAULT_WANTED_HEADERS", "HEAD_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONNECTIONS", "MAX_HEAD", "MAX_HEADERS",
           "FastPath"]

# The defaults of HTTP_MAX_HEAD_BYTES, HTTP_MAX_HEADERS, HTTP_HEAD_TIMEOUT,
# HTTP_IDLE_TIMEOUT and HTTP_MAX_CONNECTIONS (raftkv.config.settings).
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0
# longer than HTTP clients keep an idle pooled connection (aiohttp's 15 s),
# so that a client never sends on a connection the server is closing
IDLE_TIMEOUT = 75.0
MAX_CONNECTIONS = 1024
DEFAULT_WANTED_HEADERS = ("authorization", "x-raftkv-forwarded-by", "x-forwarded-for")
_RESPONSE = b"%s%s%s%s%sContent-Length: %d\r\n%s\r\n%s"


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
        self.routes: dict[bytes, dict[bytes, FastRoute]] = {}
        for (method, path), fn in routes.items():
            name = method.decode("ascii") if isinstance(method, bytes) else method
            name = name.upper()
            if name == "HEAD":
                raise ValueError("HEAD is left to the fallback: its answer has no body")
            if not path.startswith("/"):
                raise ValueError(f"route path {path!r} does not start with '/'")
            by_method = self.routes.setdefault(path.encode("ascii"), {})
            by_method[name.encode("ascii")] = FastRoute(fn, name, path)
        self.header_kinds: dict[bytes, Any] = dict(FRAMING_HEADERS)
        for name in wanted_headers:
            lname = name.lower()
            if lname.encode("ascii") in FRAMING_HEADERS:
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

    def internal_error(self, route: FastRoute, exc: BaseException) -> Reply:
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

    def failed(self, route: FastRoute, exc: BaseException) -> Reply:
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
