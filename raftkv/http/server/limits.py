"""The HTTP port's limits, and aiohttp's side of them.

Every connection to the port starts on the fast path (:mod:`.fastpath`),
which holds the limits of :class:`HttpLimits` itself and, once it hands a
connection to aiohttp, still fronts it (:class:`~.relay.Relay`). aiohttp's own
request handler is configured here to agree: the same idle timeout
(aiohttp's default, an hour, is far longer), header lines no longer than a
whole head may be, no more header fields; and :class:`JsonErrorHandler`
answers whatever its parser refuses -- a bad chunk size, a header line too
long, too many headers -- as JSON naming the problem with the fitting status
(400, 413, 431) instead of aiohttp's plain text, then closes the connection.
"""

from __future__ import annotations

import functools
import http
import json
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong

from ..api.replies import JSON_TYPE
from .fastpath import (
    HEAD_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEAD,
    MAX_HEADERS,
    FastPath,
)

__all__ = ["HttpLimits", "JsonErrorHandler", "raise_open_files_limit"]

# files besides the HTTP connections: the volume's, SQLite's, Raft peers', the event loop's
_OTHER_FILES = 512


@dataclass(frozen=True)
class HttpLimits:
    """HTTP_MAX_HEAD_BYTES, HTTP_MAX_HEADERS, HTTP_HEAD_TIMEOUT,
    HTTP_IDLE_TIMEOUT and HTTP_MAX_CONNECTIONS (None: no cap), in bytes and
    seconds."""

    max_head: int = MAX_HEAD
    max_headers: int = MAX_HEADERS
    head_timeout: float = HEAD_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    max_connections: int | None = MAX_CONNECTIONS

    @classmethod
    def from_settings(cls, settings: Any) -> HttpLimits:
        return cls(max_head=settings.http_max_head_bytes, max_headers=settings.http_max_headers,
                   head_timeout=settings.http_head_timeout / 1000, idle_timeout=settings.http_idle_timeout / 1000,
                   max_connections=settings.http_max_connections or None)

    def to_spec(self) -> dict:
        """For a worker's JSON spec (:mod:`raftkv.http.workers.pool`)."""
        return asdict(self)

    @classmethod
    def from_spec(cls, spec: dict) -> HttpLimits:
        return cls(**spec)

    def for_relays(self) -> HttpLimits:
        """The limits of the Raft process's internal listener, which serves
        what its own workers relay: they hold the public limits already, and
        add a header (X-Forwarded-For); and the workers' connections are not
        capped, or N workers could not relay their N caps' worth."""
        return HttpLimits(max_head=self.max_head + 4096, max_headers=self.max_headers + 8,
                          head_timeout=self.head_timeout, idle_timeout=self.idle_timeout, max_connections=None)

    def fast_path_kwargs(self) -> dict:
        return {"max_head": self.max_head, "max_headers": self.max_headers, "head_timeout": self.head_timeout,
                "idle_timeout": self.idle_timeout, "max_connections": self.max_connections}

    def aiohttp_kwargs(self) -> dict:
        """For ``web.AppRunner`` / ``web.Server``: their request handler's
        settings. A line may be as long as a whole head (the fast path's
        relay counts the head as a whole)."""
        return {"keepalive_timeout": self.idle_timeout, "max_line_size": self.max_head,
                "max_field_size": self.max_head, "max_headers": self.max_headers}


def raise_open_files_limit(limits: HttpLimits, log: Any) -> None:
    """Raise this process's soft limit of open files (often 1024) so that it
    can hold ``limits.max_connections`` connections: otherwise accepting
    fails (EMFILE) before the cap answers its 503."""
    if limits.max_connections is None:
        return
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    wanted = limits.max_connections + _OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (OSError, ValueError):
            new = soft
    if new < wanted:
        log.warning("the open files limit is below what HTTP_MAX_CONNECTIONS needs", limit=new, needed=wanted,
                 max_connections=limits.max_connections)


class JsonErrorHandler(web.RequestHandler):
    """aiohttp's request handler, answering what its parser refuses (and a
    handler's unexpected exception) as JSON: ``{"error": ..., "param":
    "request"}`` with the ``X-Raftkv-Served-By`` header. ``answered`` counts
    the answers it finished, so the fast path's relay knows when it may
    answer itself, or close a half-closed connection (:mod:`.fastpath`)."""

    # RequestHandler has __slots__; these are ours
    __slots__ = ("answered", "fast", "node_id", "on_answer", "raft_log")

    def __init__(self, manager: web.Server, *, fast: FastPath, node_id: str, log: Any, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.fast = fast
        self.node_id = node_id
        self.raft_log = log
        self.answered = 0
        self.on_answer: Callable[[], None] | None = None  # called after each answer (the relay, once at EOF)

    @classmethod
    def factory(cls, server: web.Server, loop: Any, fast: FastPath, node_id: str, log: Any, limits: HttpLimits,
                **kwargs: Any) -> functools.partial:
        """``fallback`` for a :class:`~.fastpath.FastPath`: a fresh handler
        of ``server``'s connections (what ``server()`` would make, but this
        class), with ``limits.aiohttp_kwargs()`` and ``kwargs`` (the same
        ones the server was built with)."""
        return functools.partial(cls, server, fast=fast, node_id=node_id, log=log, loop=loop,
                                 **limits.aiohttp_kwargs(), **kwargs)

    async def finish_response(self, request, resp, start_time):
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self.answered += 1
            if self.on_answer is not None:
                self.on_answer()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        status, error = self._describe(status, exc, message)
        if status >= 500:
            self.raft_log.error("internal error serving request", remote=request.remote or "",
                                error=f"{type(exc).__name__}: {exc}" if exc is not None else error,
                                trace="".join(traceback.format_exception(exc)) if exc is not None else "")
        else:
            self.raft_log.warning("unparseable request" if status == 400 else "refused request",
                                  remote=request.remote or "", status=status, error=error)
        # some of an answer is out already: the connection is beyond repair
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was under way; it cannot be replaced by an error")
        body: dict[str, Any] = {"error": error}
        if status < 500:
            body["param"] = "request"
        body["served_by"] = self.node_id
        resp = web.Response(status=status, body=(json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8"),
                            headers={"Content-Type": JSON_TYPE, "X-Raftkv-Served-By": self.node_id})
        resp.force_close()
        return resp

    def _describe(self, status: int, exc: BaseException | None, message: str | None) -> tuple[int, str]:
        fast = self.fast
        if isinstance(exc, LineTooLong):
            return fast.head_too_large()
        if isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers"):
            return fast.too_many_headers()
        if isinstance(exc, HttpProcessingError):
            code = exc.code if 400 <= (exc.code or 0) < 500 else 400
            # aiohttp's messages show the bad bytes under a caret line: the first line names the problem
            text = (exc.message or message or "").split("\n", 1)[0].rstrip(": ")
            return code, text or http.HTTPStatus(code).phrase.lower()
        if status >= 500:
            if status == 504:
                return status, "the request handler timed out"
            return status, f"internal error: {type(exc).__name__}" if exc is not None else "internal error"
        text = (message or "").split("\n", 1)[0].rstrip(": ")
        try:
            phrase = http.HTTPStatus(status).phrase.lower()
        except ValueError:
            phrase = "error"
        return status, text or phrase
