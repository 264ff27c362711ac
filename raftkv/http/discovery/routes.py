"""The routes behind :mod:`.seeker`: what a node says of itself to a
forming cluster, and the leader's side of an address update by identity.
Both sit under ``/_raftkv/``, so with ``RAFT_CLUSTER_KEY`` they take only
callers that hold the key.
"""

from __future__ import annotations

from raftkv.observability import hclog
from raftkv.raft.configuration import ConfigCommand

from ..api.context import Call, HttpContext
from ..api.params import BadRequest, parse_host_port, parse_node_id
from ..api.replies import Answer, Pending, Reply, json_reply
from .plan import proposal_json

log = hclog.get_logger("http")

__all__ = ["handle_discovery", "handle_rejoin"]


def handle_discovery(ctx: HttpContext, call: Call) -> Reply:
    """``GET /_raftkv/discovery``: this node's id, addresses and volume,
    whether it is in a cluster, and what it would found or founded."""
    node = ctx.node
    forming = ctx.forming
    return json_reply(ctx.id, {
        "id": node.id, "raft": node.raft_address, "http": node.http_address,
        "volume": node.status().get("volume_id") or "",
        # a founder is in its cluster from the moment it decided, before its core has stepped
        "member": bool(node.configuration.servers) or (forming is not None and forming.founded is not None),
        "expect": ctx.settings.bootstrap_expect,
        "proposal": proposal_json(forming.proposal) if forming is not None else None,
        "founded": proposal_json(forming.founded) if forming is not None else None,
    }, served_by=False)


def handle_rejoin(ctx: HttpContext, call: Call) -> Pending:
    """``POST /_raftkv/rejoin?nodeId=ID&raftAddr=H:P&volume=V[&httpAddr=H:P]``:
    a member moved to a new address, proven by the volume it was admitted
    with; never by where the request comes from."""
    params = call.params()
    node_id = parse_node_id(params.get("nodeId"))
    raw = params.get("raftAddr")
    if raw is None or not raw.strip():
        raise BadRequest("raftAddr", "missing parameter: raftAddr")
    address = parse_host_port(raw, "raftAddr")
    volume = (params.get("volume") or "").strip()
    if not volume:
        raise BadRequest("volume", "missing parameter: volume (the node's volume id)")
    http = params.get("httpAddr")
    http = parse_host_port(http, "httpAddr") if http else None

    async def local() -> Reply:
        node = ctx.node
        conf = node.configuration
        existing = conf.get(node_id)
        if existing is None:
            raise Answer(404, {"error": f"unknown server {node_id!r}: join it instead", "param": "nodeId"})
        if existing.address != address:
            if not existing.volume:
                raise Answer(409, {"error": f"server {node_id} is recorded without a volume identity, so nothing "
                                            f"proves the caller is it; move it with /join?replace=true",
                                   "param": "volume"})
            if existing.volume != volume:
                log.warn("refusing an address update: the volume is not the one the server was admitted with",
                         id=node_id, address=address, volume=volume, **{"admitted-volume": existing.volume})
                raise Answer(409, {"error": f"server {node_id} was admitted with another volume than {volume}; "
                                            f"a node that lost its volume joins again as a new server",
                                   "param": "volume"})
            clash = next((s for s in conf.servers if s.address == address and s.id != node_id), None)
            if clash is not None:
                raise Answer(409, {"error": f"address {address} is already used by server {clash.id}",
                                   "param": "raftAddr"})
            log.warn("server moved: updating its address in the configuration", id=node_id,
                     **{"old-address": existing.address, "new-address": address}, volume=volume)
            command = ConfigCommand.ADD_VOTER if existing.is_voter else ConfigCommand.ADD_NONVOTER
            index = await node.change_membership(command, node_id, address)
        else:
            index = None
        await ctx.registry.register_quietly(node_id, http)
        return json_reply(ctx.id, {"id": node_id, "address": address, "changed": index is not None,
                                   "index": index, "old-address": existing.address})
    return Pending.of(ctx.on_leader(call, local, write=True))
