"""The aiohttp routes of the API: keys, membership, status, snapshots.

Handlers are thin: parse and validate parameters (:mod:`.params`), then
either answer locally (``/status``, stale reads) or run the operation on
the leader (:mod:`.forward`). Errors become answers in one middleware,
through the one table of :mod:`.replies`.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from raftkv import hclog
from raftkv.node.errors import RequestError
from raftkv.raft.configuration import ConfigCommand

from .context import CTX, Call, HttpContext, call_of
from .forward import forward, on_leader
from .kv import kv_delete, kv_get, kv_set_many, map_shape, parse_mapping, read_key, write_key
from .params import (
    BadRequest,
    JoinRequest,
    TooLarge,
    parse_bool_param,
    parse_host_port,
    parse_join_json,
    parse_join_params,
    parse_json_object,
    parse_key,
    parse_node_id,
    parse_query,
)
from .replies import Answer, Reply, json_reply, respond

http_log = hclog.get_logger("http")

__all__ = ["add_routes", "read_body"]


def _ctx(request: web.Request) -> HttpContext:
    return request.app[CTX]


async def read_body(request: web.Request) -> bytes:
    limit = request.app[CTX].max_body
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge("body", request.content_length, limit)
    return await request.read()


async def _params(request: web.Request, body: bytes) -> dict[str, str]:
    """Query parameters, plus those of a form or JSON body (body wins)."""
    params: dict[str, str] = dict(request.query)
    if not body:
        return params
    ctype = request.content_type
    # JSON when it says so, or when it looks like it and says nothing at all
    # (aiohttp reports a missing Content-Type as octet-stream); text/plain is
    # always a raw value, even one that happens to start with "{".
    if ctype == "application/json" or ("Content-Type" not in request.headers
                                       and body.lstrip()[:1] == b"{"):
        doc = parse_json_object(body)
        for k, v in doc.items():
            if isinstance(v, str):
                params[k] = v
            elif isinstance(v, bool):
                params[k] = "true" if v else "false"
            elif isinstance(v, int):
                params[k] = str(v)
            else:
                raise BadRequest(k, f"invalid {k}: expected a string")
    elif ctype == "application/x-www-form-urlencoded":
        params.update(_form(body))
    elif "value" not in params:
        # a raw body is the value: curl --data-binary @file 'host/set?key=k'
        try:
            params["value"] = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("value", "body is not valid UTF-8") from None
    return params


def _form(body: bytes) -> dict[str, str]:
    """A form body: decoded as a query string is (strict UTF-8 once
    unescaped; the first of repeated names wins)."""
    return parse_query(body)


async def _call_and_params(request: web.Request) -> tuple[Call, dict[str, str]]:
    body = b""
    if request.method not in ("GET", "HEAD") and request.can_read_body:
        body = await read_body(request)
    return call_of(request, body), await _params(request, body)


# --- keys -----------------------------------------------------------------------------

async def handle_set(request: web.Request) -> web.StreamResponse:
    call, params = await _call_and_params(request)
    return respond(await write_key(_ctx(request), call, params))


async def handle_get(request: web.Request) -> web.StreamResponse:
    return respond(await read_key(_ctx(request), call_of(request)))


async def handle_remove(request: web.Request) -> web.StreamResponse:
    call, params = await _call_and_params(request)
    return respond(await kv_delete(_ctx(request), call, parse_key(params)))


async def handle_key_post(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    body = await read_body(request)
    mapping = parse_mapping(ctx, body)
    return respond(await kv_set_many(ctx, call_of(request, body), mapping))


def _key_from_path(request: web.Request) -> str:
    return parse_key({"key": request.match_info["key"]})


async def handle_key_get(request: web.Request) -> web.StreamResponse:
    key = _key_from_path(request)
    stale = parse_bool_param(request.query, "stale", False)
    return respond(await kv_get(_ctx(request), call_of(request), key, stale, map_shape))


async def handle_key_delete(request: web.Request) -> web.StreamResponse:
    return respond(await kv_delete(_ctx(request), call_of(request), _key_from_path(request)))


# --- membership ---------------------------------------------------------------------

def _join_request(request: web.Request, body: bytes, host: str | None,
                  voter_by_default: bool = False) -> tuple[JoinRequest, bool, bool]:
    """The join asked for, whether its host was guessed from the caller (only
    ``raftPort`` given), and whether it asks to move a member (``replace``).
    ``voter_by_default`` makes a join that leaves ``voter`` unsaid add a voter."""
    if body.strip() and (request.content_type == "application/json" or body.lstrip()[:1] in (b"{", b"[")):
        doc = parse_json_object(body)
        join = parse_join_json(body, host)
        named = {k: ("true" if v else "false") if isinstance(v, bool) else v
                 for k, v in doc.items() if isinstance(v, (str, bool))}
    else:
        named = {**request.query, **_form(body)} if body.strip() else dict(request.query)
        join = parse_join_params(named, host)
    guessed = not any(isinstance(named.get(k), str) and named[k].strip() for k in ("raftAddr", "addr"))
    if voter_by_default and "voter" not in named and "voter" not in request.query:
        join = dataclasses.replace(join, voter=True)
    return join, guessed, parse_bool_param({**request.query, **named}, "replace", False)


def _moving_refused(existing, join: JoinRequest, guessed: bool) -> Answer:
    """409 for a join that would move a member to another address."""
    how = (f"to move it on purpose, remove it first (POST /remove-peer?nodeId={join.id}) and join again, "
           f"or repeat the join with raftAddr=host:port and replace=true")
    if guessed:
        what = (f"server {join.id} is already a member at {existing.address}; the address {join.address} "
                f"was guessed from the caller's IP and never replaces a member's address")
    else:
        what = f"server {join.id} is already a member at {existing.address}, not {join.address}"
    return Answer(409, {"error": f"{what}; {how}", "param": "raftAddr" if not guessed else "raftPort",
                        "id": join.id, "address": existing.address})


async def handle_join(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    body = b""
    if request.method == "POST" and request.can_read_body:
        body = await read_body(request)
    call = call_of(request, body)
    # hraftd's -join sends only {"id", "addr"} and a Go leader answers it with
    # AddVoter: a raftkv leader speaking hashicorp's protocol does the same,
    # so the cluster grows alike whichever kind of node leads (autopilot
    # would promote a nonvoter only after RAFT_SERVER_STABILIZATION_TIME)
    join, guessed, replace = _join_request(request, body, call.client_host(),
                                           voter_by_default=ctx.settings.protocol == "hashicorp")

    async def local() -> Reply:
        node = ctx.node
        conf = node.configuration
        existing = conf.get(join.id)
        if existing is not None and existing.address == join.address and (existing.is_voter or not join.voter):
            await _register_quietly(ctx, join)
            return json_reply(ctx.id, {"id": existing.id, "address": existing.address,
                                       "suffrage": existing.suffrage.value, "changed": False})
        clash = next((s for s in conf.servers if s.address == join.address and s.id != join.id), None)
        if clash is not None:
            raise Answer(409, {"error": f"address {join.address} is already used by server {clash.id}; "
                                        f"remove it first (POST /remove-peer?nodeId={clash.id})",
                               "param": "raftAddr"})
        moving = existing is not None and existing.address != join.address
        if moving:
            # A member's address changes only when the caller says so: a join
            # that merely repeats an id (or guesses the host from a NAT or
            # Docker gateway) would otherwise cut that member off the cluster.
            if guessed or not replace:
                raise _moving_refused(existing, join, guessed)
            if join.id == ctx.id:
                raise Answer(409, {"error": f"server {join.id} is the leader; transfer leadership first "
                                            f"(POST /transfer-leadership) and ask the new leader",
                                   "param": "nodeId"})
            http_log.info("replacing server", id=join.id, address=join.address,
                          **{"old-address": existing.address})
            await node.change_membership(ConfigCommand.REMOVE_SERVER, join.id)
        command = ConfigCommand.ADD_VOTER if join.voter else ConfigCommand.ADD_NONVOTER
        http_log.info("join request", id=join.id, address=join.address, command=str(command))
        index = await node.change_membership(command, join.id, join.address)
        await _register_quietly(ctx, join)
        now = node.configuration.get(join.id)
        suffrage = now.suffrage.value if now else ("Voter" if join.voter else "Nonvoter")
        answer = {"id": join.id, "address": join.address, "suffrage": suffrage, "index": index, "changed": True}
        if moving:
            answer["replaced"] = existing.address
        return json_reply(ctx.id, answer)
    return respond(await on_leader(ctx, call, local, write=True))


async def _register_quietly(ctx: HttpContext, join: JoinRequest) -> None:
    if join.http:
        try:
            await ctx.registry.register(join.id, join.http)
        except RequestError:
            pass  # the node registers itself later (housekeeping)


def _unknown_server(node_id: str) -> Answer:
    return Answer(404, {"error": f"unknown server {node_id!r}", "param": "nodeId"})


async def handle_register(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    call, params = await _call_and_params(request)
    node_id = parse_node_id(params.get("nodeId"))
    http = params.get("httpAddr")
    if http is None:
        raise BadRequest("httpAddr", "missing parameter: httpAddr")
    http = parse_host_port(http, "httpAddr")

    async def local() -> Reply:
        if not ctx.node.configuration.has(node_id):
            raise _unknown_server(node_id)
        index = await ctx.registry.register(node_id, http)
        return json_reply(ctx.id, {"id": node_id, "http": http, "index": index})
    return respond(await on_leader(ctx, call, local, write=True))


async def handle_remove_peer(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    call, params = await _call_and_params(request)
    node_id = parse_node_id(params.get("nodeId", params.get("id")))

    async def local() -> Reply:
        if not ctx.node.configuration.has(node_id):
            raise _unknown_server(node_id)
        index = await ctx.node.change_membership(ConfigCommand.REMOVE_SERVER, node_id)
        if ctx.node.is_leader:
            await ctx.registry.forget(node_id)
        return json_reply(ctx.id, {"id": node_id, "removed": True, "index": index})
    return respond(await on_leader(ctx, call, local, write=True))


async def handle_transfer(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    call, params = await _call_and_params(request)
    target = params.get("to", params.get("nodeId"))
    if target is not None:
        target = parse_node_id(target, "to")

    async def local() -> Reply:
        conf = ctx.node.configuration
        if target is not None:
            if target == ctx.id:
                raise BadRequest("to", f"{target} is already the leader")
            if not conf.is_voter(target):
                raise BadRequest("to", f"{target!r} is not a voter in the configuration")
        await ctx.node.transfer_leadership(target)
        return json_reply(ctx.id, {"transferred": True, "from": ctx.id, "to": target})
    return respond(await on_leader(ctx, call, local, write=True))


# --- views -----------------------------------------------------------------------------

def status_view(ctx: HttpContext) -> dict:
    st = ctx.node.status()
    if st["leader"] is not None:
        st["leader"]["http"] = ctx.registry.http_address_of(st["leader"]["id"])
    if ctx.processes is not None:
        st["processes"] = ctx.processes()
    return st


def peers_view(ctx: HttpContext) -> list[dict]:
    rows = ctx.node.peers()
    for row in rows:
        row["http"] = ctx.registry.http_address_of(row["id"])
    return rows


async def handle_status(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    return respond(json_reply(ctx.id, status_view(ctx), served_by=False))


async def handle_peers(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    call = call_of(request)
    local_only = parse_bool_param(request.query, "local", False)
    if not local_only and not ctx.node.is_leader and not call.forwarded:
        leader_http = ctx.registry.leader_http()
        if leader_http:
            reply, _ = await forward(ctx, call, leader_http, write=False)
            if reply.status == 200:
                return respond(reply)
    return respond(json_reply(ctx.id, peers_view(ctx)))


async def handle_snapshot(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    meta = await ctx.node.snapshot_now()
    return respond(json_reply(ctx.id, {"id": meta.id, "index": meta.index, "term": meta.term, "size": meta.size}))


def add_routes(app: web.Application) -> None:
    r = app.router
    for method in ("GET", "POST"):
        r.add_route(method, "/join", handle_join)
        r.add_route(method, "/set", handle_set)
        r.add_route(method, "/remove", handle_remove)
        r.add_route(method, "/transfer-leadership", handle_transfer)
    r.add_route("DELETE", "/remove", handle_remove)
    r.add_get("/get", handle_get)
    r.add_post("/key", handle_key_post)
    r.add_get("/key/{key:.+}", handle_key_get)
    r.add_delete("/key/{key:.+}", handle_key_delete)
    r.add_post("/remove-peer", handle_remove_peer)
    r.add_delete("/remove-peer", handle_remove_peer)
    r.add_get("/status", handle_status)
    r.add_get("/peers", handle_peers)
    r.add_post("/snapshot", handle_snapshot)
    r.add_post("/_raftkv/register", handle_register)
