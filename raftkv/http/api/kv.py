"""The data plane: reads and writes of keys.

Each operation is a plain function of the context and a :class:`Call`
returning a :class:`Reply`, so the aiohttp routes, the fast path
(:mod:`raftkv.http.server.fastpath`) and the HTTP workers (:mod:`raftkv.http.workers.worker`,
whose context reaches the Raft process over the local link) run the same
code. The context says how a request gets to the leader (``ctx.on_leader``).
Failures are exceptions the one table in :mod:`raftkv.http.api.replies` turns
into answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from raftkv.fsm import encode_delete, encode_set, encode_set_many
from raftkv.node.errors import ApplyTimeout, NotLeaderError, RequestError

from ..server.fastpath import FastRequest
from .context import Call, KeyValueContext
from .params import BadRequest, parse_bool_param, parse_key, parse_key_values, parse_value
from .replies import Pending, Reply, error_reply, json_reply, value_reply, written_reply

__all__ = ["fast_route", "kv_delete", "kv_get", "kv_set", "kv_set_many", "read_key", "read_key_now", "write_key",
           "write_key_now"]


def _value_shape(ctx: KeyValueContext, key: str, value: str) -> Reply:
    return value_reply(ctx.id, key, value)


def map_shape(ctx: KeyValueContext, key: str, value: str) -> Reply:
    """hraftd's ``GET /key/k`` answer: ``{"k": "v"}``."""
    return json_reply(ctx.id, {key: value}, served_by=False)


async def kv_get(ctx: KeyValueContext, call: Call, key: str, stale: bool,
                 shape: Callable[[KeyValueContext, str, str], Reply] = _value_shape) -> Reply:
    node = ctx.node
    if stale:
        return _read_answer(ctx, key, shape)

    async def local() -> Reply:
        try:
            await node.read_barrier()
        except (NotLeaderError, ApplyTimeout):
            raise
        except RequestError as exc:
            # leadership was lost while confirming the read: nothing was
            # done, so let on_leader try the next leader
            raise NotLeaderError(exc.message, False, exc.leader_id, exc.leader_address) from None
        return _read_answer(ctx, key, shape)
    return await ctx.on_leader(call, local, write=False)


async def kv_set(ctx: KeyValueContext, call: Call, key: str, value: str) -> Reply:
    size = _size(value)

    async def local() -> Reply:
        index, _ = await ctx.node.propose(encode_set(key, value))
        return written_reply(ctx.id, key, index, size)
    return await ctx.on_leader(call, local, write=True)


async def kv_delete(ctx: KeyValueContext, call: Call, key: str) -> Reply:
    async def local() -> Reply:
        index, removed = await ctx.node.propose(encode_delete(key))
        return json_reply(ctx.id, {"key": key, "removed": bool(removed), "index": index})
    return await ctx.on_leader(call, local, write=True)


async def kv_set_many(ctx: KeyValueContext, call: Call, mapping: Mapping[str, str]) -> Reply:
    async def local() -> Reply:
        index, count = await ctx.node.propose(encode_set_many(mapping))
        return json_reply(ctx.id, {"keys": count, "index": index})
    return await ctx.on_leader(call, local, write=True)


# --- the query-string forms (GET /get, GET|POST /set), shared with the fast path

async def read_key(ctx: KeyValueContext, call: Call) -> Reply:
    """``GET /get?key=K[&stale=true]``."""
    return await kv_get(ctx, call, parse_key(call.query), parse_bool_param(call.query, "stale", False))


async def write_key(ctx: KeyValueContext, call: Call, params: Mapping[str, str] | None = None) -> Reply:
    """``/set?key=K&value=V`` (``params``: query plus body, when there is one)."""
    params = call.query if params is None else params
    key = parse_key(params)
    return await kv_set(ctx, call, key, parse_value(params, ctx.max_body, key))


def parse_mapping(ctx: KeyValueContext, body: bytes) -> dict[str, str]:
    if not body.strip():
        raise BadRequest("body", "missing JSON body of keys and values")
    return parse_key_values(body, ctx.max_body)


# --- the same two routes for the fast path: no coroutine where none is needed

def read_key_now(ctx: KeyValueContext, call: Call) -> Reply | Pending | Awaitable[Reply]:
    """``GET /get`` answered as early as it can be: a stale read at once; a
    linearizable read on the leader as a pending answer that the shared
    read-index round resolves; anything else (forwarding, no leader yet) as
    :func:`read_key`'s coroutine."""
    key = parse_key(call.query)
    if parse_bool_param(call.query, "stale", False):
        return _read_answer(ctx, key, _value_shape)
    node = ctx.node
    if node.is_leader:
        try:
            barrier = node.read_barrier_nowait()
        except NotLeaderError:
            pass
        else:
            return _then(ctx, barrier, lambda _index: _read_answer(ctx, key, _value_shape),
                         lambda: kv_get(ctx, call, key, False), _read_retries)
    return kv_get(ctx, call, key, False)


def write_key_now(ctx: KeyValueContext, call: Call) -> Reply | Pending | Awaitable[Reply]:
    """``GET /set`` on the leader as a pending answer (resolved when the
    write is applied); elsewhere :func:`write_key`'s coroutine."""
    params = call.query
    key = parse_key(params)
    value = parse_value(params, ctx.max_body, key)
    node = ctx.node
    if node.is_leader:
        try:
            proposed = node.propose_nowait(encode_set(key, value))
        except NotLeaderError:
            pass
        else:
            size = _size(value)
            return _then(ctx, proposed,
                         lambda result: written_reply(ctx.id, key, result[0], size),
                         lambda: kv_set(ctx, call, key, value), _write_retries)
    return kv_set(ctx, call, key, value)


def _size(value: str) -> int:
    # The answer to a write names what was written, not the value itself:
    # echoing a 500 KB value back doubles the traffic and tells nothing new.
    return len(value.encode("utf-8", "surrogatepass"))


def _read_answer(ctx: KeyValueContext, key: str, shape: Callable[[KeyValueContext, str, str], Reply]) -> Reply:
    value = ctx.node.get_local(key)
    if value is None:
        return json_reply(ctx.id, {"error": "key not found", "key": key}, 404)
    return shape(ctx, key, value)


def _read_retries(exc: BaseException) -> bool:
    # leadership lost while confirming: nothing was done, and the coroutine
    # path (on_leader) finds the next leader
    return isinstance(exc, RequestError) and not isinstance(exc, ApplyTimeout)


def _write_retries(exc: BaseException) -> bool:
    return isinstance(exc, NotLeaderError)


def _then(ctx, waiting: asyncio.Future, answer: Callable[[object], Reply],
          again: Callable[[], Awaitable[Reply]], retries: Callable[[BaseException], bool]) -> Pending:
    """The request's answer, pending: ``answer(result)`` once ``waiting`` is
    done; if it failed in a way ``retries`` accepts, the answer of the
    coroutine ``again()``; for any other failure, the error's answer."""
    out = Pending()

    def done(fut: asyncio.Future) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            try:
                out.resolve(answer(fut.result()))
            except Exception as error:
                out.resolve(_answer_error(ctx, error))
        elif retries(exc):
            retry = asyncio.ensure_future(_answering(ctx, again()))
            retry.add_done_callback(lambda t: out.resolve(asyncio.CancelledError() if t.cancelled()
                                                          else t.exception() or t.result()))
        else:
            out.resolve(_answer_error(ctx, exc))
    waiting.add_done_callback(done)
    return out


def _answer_error(ctx, exc: BaseException) -> Reply | BaseException:
    reply = error_reply(ctx.id, exc, ctx.known_leader())
    return exc if reply is None else reply


def _answer_or_raise(ctx, exc: Exception) -> Reply:
    reply = error_reply(ctx.id, exc, ctx.known_leader())
    if reply is None:
        raise exc  # a bug: the fast path answers 500 and logs it
    return reply


async def _answering(ctx, pending: Awaitable[Reply]) -> Reply:
    try:
        return await pending
    except Exception as exc:
        return _answer_or_raise(ctx, exc)


def fast_route(ctx, operation):
    """A data-plane operation as a fast-path route (``ctx``: an
    :class:`HttpContext`, or a worker's context with the same surface):
    ``operation(ctx, call)`` returns a :class:`Reply`, a :class:`Pending` one,
    or a coroutine; failures become their answers. The fast routes are not admin
    routes (no cluster key), and need no CORS header."""
    def route(query: dict[str, str], request: FastRequest) -> Reply | Pending | Awaitable[Reply]:
        call = Call(request.method, request.target, query, request.headers, request.remote)
        try:
            result = operation(ctx, call)
        except Exception as exc:
            return _answer_or_raise(ctx, exc)
        if result.__class__ is Reply or result.__class__ is Pending:
            return result
        return _answering(ctx, result)
    return route
