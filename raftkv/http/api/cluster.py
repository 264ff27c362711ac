"""The cluster's members and state: membership changes (``/join``,
``/remove-peer``, ``/transfer-leadership``, the registry's
``/_raftkv/register``) and the views (``/status``, ``/peers``, ``/readyz``).

A membership change runs on the leader (:func:`~.forward.on_leader`:
forwarded there from a follower) and answers once the change is committed.
"""

from __future__ import annotations

import asyncio
import dataclasses

from raftkv.node.errors import RequestError
from raftkv.observability import hclog
from raftkv.raft.configuration import ConfigCommand

from .context import Call, HttpContext
from .forward import forward, on_leader
from .params import (
    BadRequest,
    JoinRequest,
    parse_bool_param,
    parse_host_port,
    parse_join_json,
    parse_join_params,
    parse_json_object,
    parse_node_id,
    parse_query,
)
from .replies import Answer, Pending, Reply, json_reply

http_log = hclog.get_logger("http")

__all__ = ["handle_join", "handle_peers", "handle_readyz", "handle_register", "handle_remove_peer", "handle_status",
           "handle_transfer", "peers_view", "status_view"]

# How long /readyz waits for the leader's confirmed commit index to be
# applied here: a node keeping up gets there within a round trip and a disk
# write, one that lags does not, and a probe's timeout (Kubernetes: 1s) is longer.
READY_GRACE = 0.5


# --- membership ---------------------------------------------------------------------

def _join_request(call: Call, host: str | None, voter_by_default: bool = False) -> tuple[JoinRequest, bool, bool]:
    """The join asked for, whether its host was guessed from the caller (only
    ``raftPort`` given), and whether it asks to move a member (``replace``).
    ``voter_by_default`` makes a join that leaves ``voter`` unsaid add a voter."""
    body = call.body
    if body.strip() and (call.content_type == "application/json" or body.lstrip()[:1] in (b"{", b"[")):
        doc = parse_json_object(body)
        join = parse_join_json(body, host)
        named = {k: ("true" if v else "false") if isinstance(v, bool) else v
                 for k, v in doc.items() if isinstance(v, (str, bool))}
    else:
        named = {**call.query, **parse_query(body)} if body.strip() else dict(call.query)
        join = parse_join_params(named, host)
    guessed = not any(isinstance(named.get(k), str) and named[k].strip() for k in ("raftAddr", "addr"))
    if voter_by_default and "voter" not in named and "voter" not in call.query:
        join = dataclasses.replace(join, voter=True)
    return join, guessed, parse_bool_param({**call.query, **named}, "replace", False)


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


def handle_join(ctx: HttpContext, call: Call) -> Pending:
    """``GET|POST /join?nodeId=ID&raftAddr=H:P`` (or ``raftPort``, or hraftd's
    JSON body): add a server, a nonvoter unless ``voter=true``."""
    # hraftd's -join sends only {"id", "addr"} and a Go leader answers it with
    # AddVoter: a raftkv leader speaking hashicorp's protocol does the same,
    # so the cluster grows alike whichever kind of node leads (autopilot
    # would promote a nonvoter only after RAFT_SERVER_STABILIZATION_TIME)
    join, guessed, replace = _join_request(call, call.client_host(),
                                           voter_by_default=ctx.settings.protocol == "hashicorp")

    async def local() -> Reply:
        node = ctx.node
        conf = node.configuration
        existing = conf.get(join.id)
        if existing is not None and existing.address == join.address and (existing.is_voter or not join.voter):
            await ctx.registry.register_quietly(join.id, join.http)
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
        await ctx.registry.register_quietly(join.id, join.http)
        now = node.configuration.get(join.id)
        suffrage = now.suffrage.value if now else ("Voter" if join.voter else "Nonvoter")
        answer = {"id": join.id, "address": join.address, "suffrage": suffrage, "index": index, "changed": True}
        if moving:
            answer["replaced"] = existing.address
        return json_reply(ctx.id, answer)
    return Pending.of(on_leader(ctx, call, local, write=True))


def _unknown_server(node_id: str) -> Answer:
    return Answer(404, {"error": f"unknown server {node_id!r}", "param": "nodeId"})


def handle_register(ctx: HttpContext, call: Call) -> Pending:
    """``POST /_raftkv/register?nodeId=ID&httpAddr=H:P``: a member's HTTP address, into the registry."""
    params = call.params()
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
    return Pending.of(on_leader(ctx, call, local, write=True))


def handle_remove_peer(ctx: HttpContext, call: Call) -> Pending:
    """``POST|DELETE /remove-peer?nodeId=ID``."""
    params = call.params()
    node_id = parse_node_id(params.get("nodeId", params.get("id")))

    async def local() -> Reply:
        if not ctx.node.configuration.has(node_id):
            raise _unknown_server(node_id)
        index = await ctx.node.change_membership(ConfigCommand.REMOVE_SERVER, node_id)
        if ctx.node.is_leader:
            await ctx.registry.forget(node_id)
        return json_reply(ctx.id, {"id": node_id, "removed": True, "index": index})
    return Pending.of(on_leader(ctx, call, local, write=True))


def handle_transfer(ctx: HttpContext, call: Call) -> Pending:
    """``GET|POST /transfer-leadership[?to=ID]``."""
    params = call.params()
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
    return Pending.of(on_leader(ctx, call, local, write=True))


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


def handle_status(ctx: HttpContext, call: Call) -> Reply:
    """``GET /status``."""
    return json_reply(ctx.id, status_view(ctx), served_by=False)


def handle_peers(ctx: HttpContext, call: Call) -> Reply | Pending:
    """``GET /peers[?local=true]``: the leader's view, unless ``local``."""
    local_only = parse_bool_param(call.query, "local", False)
    if not local_only and not ctx.node.is_leader and not call.forwarded:
        leader_http = ctx.registry.leader_http()
        if leader_http:
            return Pending.of(_leaders_peers(ctx, call, leader_http))
    return json_reply(ctx.id, peers_view(ctx))


async def _leaders_peers(ctx: HttpContext, call: Call, leader_http: str) -> Reply:
    reply, _ = await forward(ctx, call, leader_http, write=False)
    if reply.status == 200:
        return reply
    return json_reply(ctx.id, peers_view(ctx))


def handle_readyz(ctx: HttpContext, call: Call) -> Reply | Pending:
    """``GET /readyz``: 200 once this node has a leader and has applied what
    that leader has committed, else 503 and the reason."""
    first = ctx.node.readiness()
    if first["leader"] is None or (not first["ready"] and first["applied_index"] >= first["leader_commit_index"]):
        return _readyz_reply(ctx, first)  # no leader to catch up with: nothing to wait for
    return Pending.of(_readyz_confirmed(ctx))


async def _readyz_confirmed(ctx: HttpContext) -> Reply:
    # What the node last heard may be old news: a process that was frozen,
    # or cut off, wakes up to messages sent long ago, and a heartbeat's
    # commit index stops at what the follower holds. A read index is the
    # leader's commit index now, confirmed by a heartbeat round; the barrier
    # returns once this node has applied it. Committed and not yet applied is
    # the normal state of a busy node for the length of a disk write, so it
    # gets READY_GRACE to get there.
    try:
        index = await asyncio.wait_for(ctx.node.read_barrier(), READY_GRACE)
    except TimeoutError:
        body = ctx.node.readiness()
        if body["ready"]:
            body.update(ready=False, reason=f"leader {body['leader']} did not confirm its commit index within "
                                            f"{READY_GRACE * 1000:.0f}ms (applied {body['applied_index']})")
        return _readyz_reply(ctx, body)
    except RequestError:
        # a node that just lost its leader, or a follower speaking hashicorp's
        # protocol (no ReadIndexRequest): what it last heard is all it has
        return _readyz_reply(ctx, ctx.node.readiness())
    return _readyz_reply(ctx, ctx.node.readiness(upto=index))


def _readyz_reply(ctx: HttpContext, body: dict) -> Reply:
    return json_reply(ctx.id, body, 200 if body["ready"] else 503)
