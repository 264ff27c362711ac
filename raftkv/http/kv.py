"""The data plane: reads and writes of keys.

Each operation is a plain function of the context and a :class:`Call`
returning a :class:`Reply`, so the aiohttp routes, the fast path
(:mod:`raftkv.http.fastpath`) and the HTTP workers (:mod:`raftkv.http.worker`,
whose context reaches the Raft process over the local link) run the same
code. The context says how a request gets to the leader (``ctx.on_leader``).
Failures are exceptions the one table in :mod:`raftkv.http.replies` turns
into answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from raftkv.fsm import encode_delete, encode_set, encode_set_many
from raftkv.node.errors import ApplyTimeout, NotLeaderError, RequestError

from .context import Call, HttpContext
from .fastpath import FastRequest
from .params import BadRequest, parse_bool_param, parse_key, parse_key_values, parse_value
from .replies import Reply, error_reply, json_reply

__all__ = ["fast_route", "kv_delete", "kv_get", "kv_set", "kv_set_many", "read_key", "write_key"]


def _value_shape(ctx: HttpContext, key: str, value: str) -> Reply:
    return json_reply(ctx.id, {"key": key, "value": value})


def map_shape(ctx: HttpContext, key: str, value: str) -> Reply:
    """hraftd's ``GET /key/k`` answer: ``{"k": "v"}``."""
    return json_reply(ctx.id, {key: value}, served_by=False)


async def kv_get(ctx: HttpContext, call: Call, key: str, stale: bool,
                 shape: Callable[[HttpContext, str, str], Reply] = _value_shape) -> Reply:
    node = ctx.node

    def answer() -> Reply:
        value = node.get_local(key)
        if value is None:
            return json_reply(ctx.id, {"error": "key not found", "key": key}, 404)
        return shape(ctx, key, value)
    if stale:
        return answer()

    async def local() -> Reply:
        try:
            await node.read_barrier()
        except (NotLeaderError, ApplyTimeout):
            raise
        except RequestError as exc:
            # leadership was lost while confirming the read: nothing was
            # done, so let on_leader try the next leader
            raise NotLeaderError(exc.message, False, exc.leader_id, exc.leader_address) from None
        return answer()
    return await ctx.on_leader(call, local, write=False)


async def kv_set(ctx: HttpContext, call: Call, key: str, value: str) -> Reply:
    # The answer names what was written, not the value itself: echoing a
    # 500 KB value back doubles the traffic and tells the client nothing new.
    size = len(value.encode("utf-8", "surrogatepass"))

    async def local() -> Reply:
        index, _ = await ctx.node.propose(encode_set(key, value))
        return json_reply(ctx.id, {"key": key, "index": index, "size": size})
    return await ctx.on_leader(call, local, write=True)


async def kv_delete(ctx: HttpContext, call: Call, key: str) -> Reply:
    async def local() -> Reply:
        index, removed = await ctx.node.propose(encode_delete(key))
        return json_reply(ctx.id, {"key": key, "removed": bool(removed), "index": index})
    return await ctx.on_leader(call, local, write=True)


async def kv_set_many(ctx: HttpContext, call: Call, mapping: Mapping[str, str]) -> Reply:
    async def local() -> Reply:
        index, count = await ctx.node.propose(encode_set_many(mapping))
        return json_reply(ctx.id, {"keys": count, "index": index})
    return await ctx.on_leader(call, local, write=True)


# --- the query-string forms (GET /get, GET|POST /set), shared with the fast path

async def read_key(ctx: HttpContext, call: Call) -> Reply:
    """``GET /get?key=K[&stale=true]``."""
    return await kv_get(ctx, call, parse_key(call.query), parse_bool_param(call.query, "stale", False))


async def write_key(ctx: HttpContext, call: Call, params: Mapping[str, str] | None = None) -> Reply:
    """``/set?key=K&value=V`` (``params``: query plus body, when there is one)."""
    params = call.query if params is None else params
    key = parse_key(params)
    return await kv_set(ctx, call, key, parse_value(params, ctx.max_body, key))


def parse_mapping(ctx: HttpContext, body: bytes) -> dict[str, str]:
    if not body.strip():
        raise BadRequest("body", "missing JSON body of keys and values")
    return parse_key_values(body, ctx.max_body)


def fast_route(ctx, operation):
    """A data-plane operation as a fast-path route (``ctx``: an
    :class:`HttpContext`, or a worker's context with the same surface). The
    fast routes are not admin routes (no cluster key), and need no CORS
    header."""
    async def route(query: dict[str, str], request: FastRequest) -> Reply:
        call = Call(request.method, request.target, query, request.headers, request.remote)
        try:
            return await operation(ctx, call)
        except Exception as exc:
            reply = error_reply(ctx.id, exc, ctx.known_leader())
            if reply is None:
                raise  # a bug: the fast path answers 500 and logs it
            return reply
    return route
