"""Running a request on the leader: here if this node leads, else forwarded.

* on the leader, run the operation (propose / ReadIndex / membership change)
  and answer once it is committed and applied;
* on a follower, forward the request unchanged to the leader's HTTP address
  (from the replicated registry, :mod:`raftkv.http.api.registry`) and relay the
  answer. The forwarded copy carries ``X-Raftkv-Forwarded-By`` so a node
  that is asked as leader but is not one any more answers 503 instead of
  bouncing the request around, and ``X-Forwarded-For`` so ``/join`` still
  sees the joining node's own IP;
* with no leader known, wait for one (a few election timeouts) before
  answering 503.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiohttp
from yarl import URL

from raftkv.node.errors import NotLeaderError
from raftkv.observability import hclog

from .context import FORWARDED_BY, Call, HttpContext
from .params import origin_form
from .replies import SERVED_BY, Reply, unavailable

http_log = hclog.get_logger("http")

__all__ = ["forward", "leader_wait", "on_leader", "unknown_leader_http"]



def leader_wait(ctx: HttpContext) -> float:
    """How long a request waits for a leader: a few election timeouts."""
    s = ctx.settings
    return min(s.apply_timeout, max(3000, 3 * s.heartbeat_timeout + 2 * s.election_timeout)) / 1000


def no_leader_reply(ctx: HttpContext, message: str) -> Reply:
    return unavailable(ctx.id, message, False, ctx.registry.leader())


def unknown_leader_http(ctx: HttpContext, leader_id: str, write: bool) -> str:
    """Why a follower cannot forward to ``leader_id``, once it has waited a
    few election timeouts for the leader's HTTP address to be registered."""
    if ctx.settings.protocol == "hashicorp":
        # A raftkv leader registers its HTTP address as soon as its first
        # entry commits; a hashicorp/raft node never does, and nothing in its
        # protocol tells where it serves HTTP: waiting longer cannot help.
        what = "writes" if write else "linearizable reads (or read here with stale=true)"
        return (f"the leader {leader_id} is a hashicorp/raft node whose HTTP address raftkv cannot learn; "
                f"send {what} to it directly")
    return f"the HTTP address of leader {leader_id} is not known yet"


async def on_leader(ctx: HttpContext, call: Call, local: Callable[[], Awaitable[Reply]], write: bool) -> Reply:
    """Run ``local`` if this node leads; else forward to the leader. With no
    leader known, or a leader that cannot be reached or says it no longer
    leads, wait for the next one (up to a few election timeouts) and retry:
    those attempts changed nothing, so a retry cannot apply a write twice."""
    node = ctx.node
    loop = node.loop  # not asyncio.get_running_loop(): a getpid() per call on Python 3.11
    deadline = loop.time() + leader_wait(ctx)
    last: Reply | None = None
    while True:
        if node.is_leader:
            try:
                return await local()
            except NotLeaderError:
                pass  # lost leadership before the request reached the core
        elif call.forwarded:
            return no_leader_reply(ctx, "node is not the leader")
        else:
            leader_http = ctx.registry.leader_http()
            if leader_http:
                last, retry = await forward(ctx, call, leader_http, write, quiet=last is not None)
                if not retry:
                    return last
        remaining = deadline - loop.time()
        if remaining <= 0:
            if last is not None:
                return last
            if node.leader_id:
                return no_leader_reply(ctx, unknown_leader_http(ctx, node.leader_id, write))
            return no_leader_reply(ctx, "no leader")
        await node.wait_state_change(min(remaining, 0.05))


def forward_headers(ctx: HttpContext, call: Call) -> dict[str, str]:
    headers = {FORWARDED_BY: ctx.id, "X-Forwarded-For": call.client_host() or ""}
    for name in ("Authorization", "Content-Type"):
        value = call.header(name)
        if value:
            headers[name] = value
    return headers


async def forward(ctx: HttpContext, call: Call, leader_http: str, write: bool,
                  quiet: bool = False) -> tuple[Reply, bool]:
    """Relay the request to the leader. Returns the answer and whether it is
    safe and useful to retry (nothing was done, a new leader may help)."""
    url = URL(ctx.node_url(leader_http, origin_form(call.raw_path)), encoded=True)
    try:
        async with ctx.client.request(call.method, url, data=call.body or None,
                                      headers=forward_headers(ctx, call), allow_redirects=False) as resp:
            data = await resp.read()
            answer = Reply(resp.status, data, resp.headers.get("Content-Type") or "application/json",
                           ((SERVED_BY, resp.headers.get(SERVED_BY, "")),))
            retry = False
            if resp.status == 503:
                try:
                    retry = json.loads(data).get("outcome_unknown") is False
                except (ValueError, AttributeError):
                    retry = False
            return answer, retry
    except aiohttp.ClientConnectorError as exc:
        # never connected: the leader is gone; an election will name another
        http_log.log("DEBUG" if quiet else "WARN", "failed to forward request to leader", leader=leader_http,
                     error=str(exc))
        return no_leader_reply(ctx, f"leader unreachable: {exc}"), True
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        http_log.warn("failed to forward request to leader", leader=leader_http,
                      error=str(exc) or type(exc).__name__)
        return unavailable(ctx.id, f"forwarding to the leader failed: {exc or type(exc).__name__}",
                           write, ctx.registry.leader()), not write
