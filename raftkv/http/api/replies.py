"""Answers of the HTTP API: JSON bodies, and the one table that maps why a
request failed to a status code.

Every answer is JSON and names the node that served it: the
``X-Raftkv-Served-By`` header always, and a ``served_by`` key where the body
is not a user's key/value map. Bad input is 400 with ``param`` naming the
culprit; an absent key 404; a body or value over ``HTTP_MAX_BODY`` 413; no
leader or a timeout 503 with ``outcome_unknown`` saying whether the write may
still happen; a node whose disk is full 507 naming the file it could not
write (its volume failing or gone otherwise: 503 saying so; the node is
stopping either way). Nothing a client sends produces a 500: a 500 means a bug.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring as _encode_string  # what ensure_ascii=False uses
from typing import Any

from aiohttp import web

from raftkv.node.errors import ApplyTimeout, BadBackup, DiskFull, RejectReason, RequestError

from .params import BadRequest, TooLarge

__all__ = ["JSON_TYPE", "SERVED_BY", "Answer", "Pending", "Reply", "encode_json", "error_reply", "json_reply",
           "respond", "unavailable", "value_reply", "written_reply"]

JSON_TYPE = "application/json; charset=utf-8"
SERVED_BY = "X-Raftkv-Served-By"


@dataclass(frozen=True, slots=True)
class Reply:
    """A data-plane answer. ``headers`` are extra ones, as ``(name, value)``
    pairs or a mapping, on top of the factory's common headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = ()


class Pending:
    """An answer that comes later: what a route returns when the answer
    waits on the node (a write to commit, a read index to be confirmed) or
    on another node (forwarding to the leader), either

    * empty, and given its answer with :meth:`resolve` by whoever has it --
      a future's done-callback, say: no task, and unlike an
      ``asyncio.Future`` it delivers at once, with no turn of the event loop
      in between; or
    * :meth:`of` a coroutine, which runs once a server asks for the answer:
      as a task on the fast path (:meth:`then`), awaited in place by aiohttp
      (``await pending``).

    The outcome is the :class:`Reply`, or the exception the request failed
    with, which the server answers through :func:`error_reply` (and, if
    that has no answer for it, as a bug: 500)."""

    __slots__ = ("_deliver", "_outcome", "_work")

    def __init__(self) -> None:
        self._deliver: Callable[[Reply | BaseException], None] | None = None
        self._outcome: Reply | BaseException | None = None
        self._work: Awaitable[Reply] | None = None  # a coroutine not started yet, or its task

    @classmethod
    def of(cls, work: Awaitable[Reply]) -> Pending:
        """The answer of ``work``, a coroutine, when a server asks for it."""
        pending = cls()
        pending._work = work
        return pending

    def resolve(self, outcome: Reply | BaseException) -> None:
        deliver, self._deliver = self._deliver, None
        if deliver is not None:
            deliver(outcome)
        elif self._outcome is None:
            self._outcome = outcome

    def then(self, deliver: Callable[[Reply | BaseException], None]) -> None:
        """Call ``deliver(outcome)`` once the outcome is known (now, if it is)."""
        work = self._work
        if work is not None and not isinstance(work, asyncio.Future):
            self._deliver = deliver
            task = asyncio.ensure_future(work)
            self._work = task  # held here: the loop keeps only a weak reference to a task
            task.add_done_callback(self._finished)
        elif self._outcome is not None:
            deliver(self._outcome)
        else:
            self._deliver = deliver

    def _finished(self, task: asyncio.Future) -> None:
        self._work = None
        self.resolve(asyncio.CancelledError() if task.cancelled() else task.exception() or task.result())

    def __await__(self) -> Generator[Any, None, Reply]:
        return self._answer().__await__()

    async def _answer(self) -> Reply:
        work = self._work
        if work is not None and not isinstance(work, asyncio.Future):
            self._work = None
            return await work
        waiter = asyncio.get_running_loop().create_future()
        self.then(functools.partial(_settle, waiter))
        return await waiter


def _settle(waiter: asyncio.Future, outcome: Reply | BaseException) -> None:
    if waiter.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        waiter.cancel()
    elif isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


# One encoder for every answer: json.dumps(..., ensure_ascii=False) builds a
# new encoder per call, on the path of every request.
_encoder = json.JSONEncoder(ensure_ascii=False)


def encode_json(body: Any) -> bytes:
    return (_encoder.encode(body) + "\n").encode("utf-8")


class Answer(Exception):
    """An early answer with a specific status (404 unknown server, 409 ...)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body


def respond(reply: Reply) -> web.Response:
    """The reply as aiohttp's response."""
    headers = {"Content-Type": reply.content_type}
    headers.update(reply.headers)
    return web.Response(body=reply.body, status=reply.status, headers=headers)


def json_reply(node_id: str, body: Any, status: int = 200, served_by: bool = True) -> Reply:
    if served_by and isinstance(body, dict):
        body = {**body, "served_by": node_id}
    return Reply(status, encode_json(body), JSON_TYPE, _served_by_header(node_id))


@functools.lru_cache(maxsize=64)
def _served_by_header(node_id: str) -> tuple[tuple[str, str], ...]:
    # one tuple per node id, so the fast path renders its line once
    return ((SERVED_BY, node_id),)


def value_reply(node_id: str, key: str, value: str, level: str) -> Reply:
    """``{"key": k, "value": v, "level": level, "served_by": id}``: what
    :func:`json_reply` makes of it, byte for byte, without a dict and an
    encoder walk per read."""
    body = '{"key": %s, "value": %s, "level": "%s", "served_by": %s}\n' % (
        _encode_string(key), _encode_string(value), level, _encode_string(node_id))
    return Reply(200, body.encode("utf-8"), JSON_TYPE, _served_by_header(node_id))


def written_reply(node_id: str, key: str, index: int, size: int) -> Reply:
    """``{"key": k, "index": i, "size": n, "served_by": id}``, as :func:`value_reply`."""
    body = '{"key": %s, "index": %d, "size": %d, "served_by": %s}\n' % (
        _encode_string(key), index, size, _encode_string(node_id))
    return Reply(200, body.encode("utf-8"), JSON_TYPE, _served_by_header(node_id))


def unavailable(node_id: str, message: str, unknown: bool, leader: dict | None) -> Reply:
    return json_reply(node_id, {"error": message, "outcome_unknown": unknown, "leader": leader}, 503)


# Refusals that are the client's to fix; every other refusal is the
# cluster's state (no leader, leadership lost, a transfer under way) and
# answers 503.
_CLIENT_ERRORS = {
    RejectReason.PEER_NOT_FOUND: 400,
    RejectReason.TRANSFER_TO_SELF: 400,
    RejectReason.UNKNOWN_SERVER: 404,
    RejectReason.NO_VOTERS_LEFT: 409,
    RejectReason.QUORUM_AT_RISK: 409,
    RejectReason.NOTHING_TO_SNAPSHOT: 409,
}


def error_reply(node_id: str, exc: BaseException, leader: dict | None) -> Reply | None:
    """The answer for a failed request, or None if ``exc`` is not an error
    a request can end with (a bug: the caller answers 500)."""
    if isinstance(exc, BadRequest):
        return json_reply(node_id, {"error": exc.message, "param": exc.param}, 400)
    if isinstance(exc, TooLarge):
        return json_reply(node_id, {"error": str(exc), "param": exc.param, "limit": exc.limit}, 413)
    if isinstance(exc, Answer):
        return json_reply(node_id, exc.body, exc.status)
    if isinstance(exc, ApplyTimeout):
        return unavailable(node_id, exc.message, exc.unknown_outcome, leader)
    if isinstance(exc, BadBackup):
        return json_reply(node_id, {"error": exc.message, "param": "body"}, 400)
    if isinstance(exc, DiskFull):
        # Insufficient Storage: not "try again shortly" -- someone must free space
        return json_reply(node_id, {"error": exc.message, "outcome_unknown": exc.unknown_outcome}, 507)
    if isinstance(exc, RequestError):
        status = _CLIENT_ERRORS.get(exc.reason)
        if status is not None:
            return json_reply(node_id, {"error": exc.message}, status)
        return unavailable(node_id, exc.message, exc.unknown_outcome, leader)
    return None
