"""``RAFT_LEAVE_ON_TERMINATE``: a node told to stop leaves the cluster first.

On SIGTERM (or SIGINT) a node with the setting hands over leadership if it
leads, then asks the leader to remove it from the configuration, as rqlite's
``-raft-cluster-remove-shutdown`` does, and only then stops. The cluster
shrinks by one voter instead of counting a server that is not coming back
against its quorum: what scaling a cluster down needs, and what a node that
will restart with its volume (a StatefulSet's pod) must not do.

The removal is ``/remove-peer`` as an operator would send it, run through
the route itself: forwarded to the leader, waiting out an election, the
cluster key sent along. The whole leave is bounded by ``RAFT_APPLY_TIMEOUT``:
without a quorum nothing can be removed, and the node stops anyway.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from raftkv.node.errors import RequestError
from raftkv.observability import hclog

from .api import cluster
from .api.context import Call, HttpContext
from .api.replies import Reply, error_reply

raft_log = hclog.get_logger("raft")

__all__ = ["leave_cluster"]


async def leave_cluster(ctx: HttpContext) -> bool:
    """Leave the cluster before stopping; whether it was removed (or was not a member)."""
    node, s = ctx.node, ctx.settings
    timeout = s.apply_timeout / 1000
    conf = node.configuration
    if not conf.has(node.id):
        raft_log.info("leave on terminate: not a member of any configuration, nothing to leave")
        return True
    if conf.voters == (node.id,):
        raft_log.warn("leave on terminate: not leaving, this is the only voter of the cluster")
        return False
    raft_log.info("leave on terminate: leaving the cluster", id=node.id, timeout=timedelta(seconds=timeout))
    try:
        async with asyncio.timeout(timeout):
            await _hand_over(ctx)
            await _remove_self(ctx)
    except TimeoutError:
        raft_log.error("leave on terminate: failed to leave the cluster in time, stopping anyway",
                       timeout=timedelta(seconds=timeout))
        return False
    except asyncio.CancelledError:  # a second signal: stop now
        raft_log.warn("leave on terminate: interrupted, stopping without leaving")
        return False
    raft_log.info("leave on terminate: removed from the configuration", id=node.id)
    return True


async def _hand_over(ctx: HttpContext) -> None:
    """A leader transfers leadership and waits to hear of its successor. If
    no voter can take over, the removal below runs on this node, which then
    steps down once its own removal commits."""
    node = ctx.node
    if not node.is_leader:
        return
    raft_log.info("leave on terminate: transferring leadership before leaving")
    try:
        await node.transfer_leadership(None)
    except RequestError as exc:
        raft_log.warn("leave on terminate: failed to transfer leadership, removing this node as leader",
                      error=str(exc))
        return
    while node.is_leader or not node.leader_id:
        await node.wait_state_change(0.05)
    raft_log.info("leave on terminate: leadership transferred", leader=node.leader_id)


async def _remove_self(ctx: HttpContext) -> None:
    """``POST /remove-peer?nodeId=<this node>`` until the leader has done it."""
    node = ctx.node
    headers = {k.lower(): v for k, v in ctx.registry.admin_headers().items()}
    path = f"/remove-peer?nodeId={node.id}"
    while True:
        raft_log.info("leave on terminate: asking the leader to remove this node", leader=node.leader_id)
        call = Call("POST", path, {"nodeId": node.id}, headers, None)
        try:
            reply: Reply = await cluster.handle_remove_peer(ctx, call)
        except Exception as exc:  # what the route fails with, answered as a server would
            reply = error_reply(ctx.id, exc, None) or Reply(500, json.dumps({"error": repr(exc)}).encode())
        if reply.status == 200:
            return
        if reply.status == 404:
            # the leader does not know this node: an earlier try was done and
            # its answer lost (a removed server never hears of its removal)
            return
        raft_log.warn("leave on terminate: removal failed, will retry", status=reply.status,
                      error=reply.body.decode(errors="replace").strip()[:300])
        await node.wait_state_change(0.2)
