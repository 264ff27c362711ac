"""The data plane: reads and writes of keys.

One function per operation -- :func:`read`, :func:`write`, :func:`delete`,
:func:`write_many` -- from the context and a :class:`~.context.Call` to a
:class:`~.replies.Reply` or a :class:`~.replies.Pending` one, whichever
server framed the request: the fast path (:mod:`raftkv.http.server.fastpath`),
aiohttp (:mod:`raftkv.http.server.app`) or an HTTP worker's fast path
(:mod:`raftkv.http.workers.worker`, whose context reaches the Raft process
over the local link). The routes (``handle_*``, listed in
:mod:`raftkv.http.routes`) only parse their parameters and call them.

On the leader an operation answers from a callback: a stale read at once, a
linearizable read once its read index is confirmed and applied, a write once
it is applied, with no task and no coroutine. Anywhere else, or when
leadership moved before the core took the request, it runs as the context's
``on_leader`` says (forwarded to the leader, or relayed to the Raft process).
Failures are exceptions the one table in :mod:`.replies` turns into answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from raftkv.node.errors import ApplyTimeout, NotLeaderError, RequestError
from raftkv.statemachine.commands import encode_delete, encode_set, encode_set_many

from .context import Call, KeyValueContext
from .params import BadRequest, parse_key, parse_key_values, parse_read_level, parse_value
from .replies import Pending, Reply, json_reply, value_reply, written_reply

__all__ = ["delete", "handle_get", "handle_key_delete", "handle_key_get", "handle_key_post", "handle_remove",
           "handle_set", "read", "write", "write_many"]

Shape = Callable[[KeyValueContext, str, str, str], Reply]
READ_LEVEL_HEADER = "X-Raftkv-Read-Level"


# --- the routes: parameters, then the operation

def handle_get(ctx: KeyValueContext, call: Call) -> Reply | Pending:
    """``GET /get?key=K[&level=L][&freshness=DUR]`` (``stale=true``: ``level=none``)."""
    level, freshness = parse_read_level(call.query)
    return read(ctx, call, parse_key(call.query), level, freshness=freshness)


def handle_set(ctx: KeyValueContext, call: Call) -> Reply | Pending:
    """``GET|POST /set?key=K&value=V`` (the value, or both, may come in a form or JSON body)."""
    params = call.params()
    key = parse_key(params)
    return write(ctx, call, key, parse_value(params, ctx.max_body, key))


def handle_remove(ctx: KeyValueContext, call: Call) -> Reply | Pending:
    """``GET|POST|DELETE /remove?key=K``."""
    return delete(ctx, call, parse_key(call.params()))


def handle_key_post(ctx: KeyValueContext, call: Call) -> Reply | Pending:
    """hraftd's ``POST /key`` with a JSON object of keys and values."""
    if not call.body.strip():
        raise BadRequest("body", "missing JSON body of keys and values")
    return write_many(ctx, call, parse_key_values(call.body, ctx.max_body))


def handle_key_get(ctx: KeyValueContext, call: Call) -> Reply | Pending:
    """hraftd's ``GET /key/K[?level=L]``, answered ``{"K": "V"}``."""
    level, freshness = parse_read_level(call.query)
    return read(ctx, call, _key_from_path(call), level, map_shape, freshness)


def handle_key_delete(ctx: KeyValueContext, call: Call) -> Reply | Pending:
    """hraftd's ``DELETE /key/K``."""
    return delete(ctx, call, _key_from_path(call))


def _key_from_path(call: Call) -> str:
    return parse_key({"key": call.match["key"]} if call.match else {})


# --- the operations

def value_shape(ctx: KeyValueContext, key: str, value: str, level: str) -> Reply:
    """``{"key": k, "value": v, "level": level, "served_by": id}``."""
    return value_reply(ctx.id, key, value, level)


def map_shape(ctx: KeyValueContext, key: str, value: str, level: str) -> Reply:
    """hraftd's ``GET /key/k`` answer: ``{"k": "v"}`` (the level in a header)."""
    reply = json_reply(ctx.id, {key: value}, served_by=False)
    return replace(reply, headers=(*_header_pairs(reply.headers), (READ_LEVEL_HEADER, level)))


def read(ctx: KeyValueContext, call: Call, key: str, level: str = "linearizable", shape: Shape = value_shape,
         freshness: int | None = None) -> Reply | Pending:
    """A read of ``key`` at one of rqlite's levels (docs/reads.md):

    - ``none``: this node's value at once (with ``freshness``, only if this
      node leads or heard from a leader within that many ms);
    - ``weak``: the value on the node that believes it leads, unchecked;
    - ``linearizable``: once the leader confirmed it still leads by a
      heartbeat round (ReadIndex) and applied the read index;
    - ``lease``: as linearizable, at once while the leader holds a read lease;
    - ``strong``: once an entry appended for the read is applied (through the log).
    """
    node = ctx.node
    if level == "none":
        if freshness is not None and not node.is_leader:
            age = node.leader_contact_age()
            if age is None or age > freshness:
                heard = "no leader" if age is None else f"the leader {age} ms ago"
                return json_reply(ctx.id, {"error": f"not fresh enough: this node heard from {heard}, "
                                                    f"freshness is {freshness} ms", "freshness": freshness}, 503)
        return _read_answer(ctx, key, shape, level)
    if level == "strong":
        return _propose(ctx, call, encode_set_many({}), lambda _result: _read_answer(ctx, key, shape, level))
    if level == "weak":
        return _read_answer(ctx, key, shape, level) if node.is_leader else _read_on_leader(ctx, call, key, shape,
                                                                                            level)
    if level == "lease" and node.serve_under_lease():
        return _read_answer(ctx, key, shape, level)
    # on the leader, or on a follower that asks the leader for the read index
    # and serves the read itself; else (no leader known) through on_leader
    try:
        barrier = node.read_barrier_nowait(lease=level == "lease")
    except NotLeaderError:
        return _read_on_leader(ctx, call, key, shape, level)
    return _when_done(barrier, lambda _index: _read_answer(ctx, key, shape, level),
                      lambda: _read_on_leader(ctx, call, key, shape, level), _read_retries)


def write(ctx: KeyValueContext, call: Call, key: str, value: str) -> Reply | Pending:
    """Set ``key`` to ``value``; answered with the entry's index and the value's size."""
    size = _size(value)
    return _propose(ctx, call, encode_set(key, value), lambda result: written_reply(ctx.id, key, result[0], size))


def delete(ctx: KeyValueContext, call: Call, key: str) -> Reply | Pending:
    """Remove ``key``; the answer says whether it was there."""
    return _propose(ctx, call, encode_delete(key), lambda result: json_reply(
        ctx.id, {"key": key, "removed": bool(result[1]), "index": result[0]}))


def write_many(ctx: KeyValueContext, call: Call, mapping: Mapping[str, str]) -> Reply | Pending:
    """Set every key of ``mapping`` in one entry."""
    return _propose(ctx, call, encode_set_many(mapping), lambda result: json_reply(
        ctx.id, {"keys": result[1], "index": result[0]}))


def _size(value: str) -> int:
    # The answer to a write names what was written, not the value itself:
    # echoing a 500 KB value back doubles the traffic and tells nothing new.
    return len(value.encode("utf-8", "surrogatepass"))


def _read_answer(ctx: KeyValueContext, key: str, shape: Shape, level: str) -> Reply:
    value = ctx.node.get_local(key)
    if value is None:
        reply = json_reply(ctx.id, {"error": "key not found", "key": key}, 404)
        return replace(reply, headers=(*_header_pairs(reply.headers), (READ_LEVEL_HEADER, level)))
    return shape(ctx, key, value, level)


def _header_pairs(headers) -> tuple[tuple[str, str], ...]:
    return tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers)


def _read_on_leader(ctx: KeyValueContext, call: Call, key: str, shape: Shape, level: str) -> Pending:
    async def local() -> Reply:
        if level == "weak":
            return _read_answer(ctx, key, shape, level)
        try:
            await ctx.node.read_barrier(lease=level == "lease")
        except (NotLeaderError, ApplyTimeout):
            raise
        except RequestError as exc:
            # leadership was lost while confirming the read: nothing was
            # done, so let on_leader try the next leader
            raise NotLeaderError(exc.message, False, exc.leader_id, exc.leader_address) from None
        return _read_answer(ctx, key, shape, level)
    return Pending.of(ctx.on_leader(call, local, write=False))


def _propose(ctx: KeyValueContext, call: Call, command: bytes, answer: Callable[[Any], Reply]) -> Reply | Pending:
    """A write: ``answer((index, result))`` once ``command`` is applied."""
    node = ctx.node
    if node.is_leader:
        try:
            proposed = node.propose_nowait(command)
        except NotLeaderError:
            pass
        else:
            return _when_done(proposed, answer, lambda: _propose_on_leader(ctx, call, command, answer),
                              _write_retries)
    return _propose_on_leader(ctx, call, command, answer)


def _propose_on_leader(ctx: KeyValueContext, call: Call, command: bytes, answer: Callable[[Any], Reply]) -> Pending:
    async def local() -> Reply:
        return answer(await ctx.node.propose(command))
    return Pending.of(ctx.on_leader(call, local, write=True))


def _read_retries(exc: BaseException) -> bool:
    # leadership lost while confirming: nothing was done, and on_leader
    # finds the next leader
    return isinstance(exc, RequestError) and not isinstance(exc, ApplyTimeout)


def _write_retries(exc: BaseException) -> bool:
    # the leader stepped down before its core took the write: nothing was done
    return isinstance(exc, NotLeaderError)


def _when_done(waiting: asyncio.Future, answer: Callable[[Any], Reply], again: Callable[[], Pending],
               retries: Callable[[BaseException], bool]) -> Pending:
    """The request's answer, pending: ``answer(result)`` once ``waiting`` is
    done; if it failed in a way ``retries`` accepts, the answer of
    ``again()``; for any other failure, that failure."""
    out = Pending()

    def done(fut: asyncio.Future) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            try:
                out.resolve(answer(fut.result()))
            except Exception as error:
                out.resolve(error)
        elif retries(exc):
            again().then(out.resolve)
        else:
            out.resolve(exc)
    waiting.add_done_callback(done)
    return out
