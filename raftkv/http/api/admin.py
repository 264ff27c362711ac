"""Admin HTTP concerns: the cluster-key gate, ``/debug/faults``, snapshots
(``POST /snapshot``), and backup and restore (``GET /snapshot``, ``POST /restore``).

Theory of operation
-------------------
With ``RAFT_CLUSTER_KEY`` set, :func:`require_cluster_key` admits requests
to the admin routes -- membership (``/join``, ``/remove-peer``,
``/transfer-leadership``), ``/restore``, ``/snapshot``, ``/debug/*`` and the
internal ``/_raftkv/*`` registry -- only with ``Authorization: Bearer
<key>`` (compared in constant time). Anything else gets 401 and a ``WARN
http: refused admin request`` line naming the caller. Key-value routes and
``/status``, ``/peers``, ``/metrics`` stay open. Without a key nothing is
checked, as before. Nodes send the token themselves when they join
(``RAFT_JOIN``) or register, and forwarding to the leader passes it on.

``/debug/faults`` drives the transport's :class:`~raftkv.transport.faults.FaultInjector`
on *this* node only (never forwarded: a fault is local by nature):

* ``GET`` lists the active rules and drop/delay counters;
* ``POST`` adds rules from a JSON body (see :mod:`raftkv.transport.faults`);
* ``DELETE`` removes them all (heals).

The routes exist only when the node was started with
``--enable-fault-injection`` / ``RAFT_FAULT_INJECTION=true``; otherwise every
method answers 403, so a production node can never be partitioned over HTTP.
``/status`` says which it is (``"fault_injection": true|false``).

Backup and restore: snapshots can be far larger than any request body
limit, so these two routes are aiohttp handlers that stream: the backup from the snapshot file to the
client, an upload from the client to a file, and a follower relays both to
the leader chunk by chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from yarl import URL

from raftkv.observability import hclog
from raftkv.transport.faults import FaultSpecError, parse_fault_spec

from .context import CTX, FORWARDED_BY, Call, HttpContext, call_of
from .forward import leader_wait, no_leader_reply
from .params import BadRequest, origin_form, parse_json_object
from .replies import SERVED_BY, Pending, Reply, json_reply, respond, unavailable

http_log = hclog.get_logger("http")

__all__ = ["ADMIN_PREFIXES", "handle_backup", "handle_faults", "handle_restore", "handle_snapshot", "is_admin_path",
           "require_cluster_key"]

ADMIN_PREFIXES = ("/join", "/remove-peer", "/transfer-leadership", "/restore", "/snapshot",
                  "/debug/", "/_raftkv/")


def is_admin_path(path: str) -> bool:
    for prefix in ADMIN_PREFIXES:
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return True
    return False


@web.middleware
async def require_cluster_key(request: web.Request, handler) -> web.StreamResponse:
    ctx: HttpContext = request.app[CTX]
    key = ctx.settings.cluster_key
    if not key or not is_admin_path(request.path):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), key.encode("utf-8")):
        return await handler(request)
    http_log.warn("refused admin request", method=request.method, path=request.path,
                  remote=call_of(request).client_host() or "",
                  error="wrong cluster key" if header else "no cluster key")
    resp = respond(json_reply(ctx.id, {"error": "this route needs the cluster key: "
                                                 "Authorization: Bearer <RAFT_CLUSTER_KEY>"}, 401))
    resp.headers["WWW-Authenticate"] = 'Bearer realm="raftkv"'
    return resp


def _forbidden(ctx: HttpContext) -> Reply:
    return json_reply(ctx.id, {"error": "fault injection is disabled on this node (start it with "
                                        "--enable-fault-injection or RAFT_FAULT_INJECTION=true)"}, 403)


def handle_faults(ctx: HttpContext, call: Call) -> Reply:
    """``GET|POST|DELETE /debug/faults``: list, add, heal (module docstring)."""
    faults = ctx.node.faults
    if faults is None:
        return _forbidden(ctx)
    if call.method == "DELETE":
        healed = faults.clear()
        return json_reply(ctx.id, {"healed": healed, **faults.describe()})
    if call.method == "POST":
        body = call.body
        if not body.strip():
            raise BadRequest("body", "missing JSON body, e.g. {\"drop\": [\"n2\"]} or {\"delay_ms\": 100}")
        try:
            rules = parse_fault_spec(parse_json_object(body))
        except FaultSpecError as exc:
            raise BadRequest(exc.param, exc.message) from None
        added = faults.add(rules)
        now = faults.clock()
        return json_reply(ctx.id, {"added": [r.to_dict(now) for r in added], **faults.describe()})
    return json_reply(ctx.id, faults.describe())


# --- snapshots, backup and restore ------------------------------------------------------

def handle_snapshot(ctx: HttpContext, call: Call) -> Pending:
    """``POST /snapshot``: take a snapshot now."""
    return Pending.of(_snapshot(ctx))


async def _snapshot(ctx: HttpContext) -> Reply:
    meta = await ctx.node.snapshot_now()
    return json_reply(ctx.id, {"id": meta.id, "index": meta.index, "term": meta.term, "size": meta.size})


BACKUP_CHUNK = 1024 * 1024
SNAPSHOT_INDEX = "X-Raftkv-Snapshot-Index"
SNAPSHOT_TERM = "X-Raftkv-Snapshot-Term"
SNAPSHOT_CRC = "X-Raftkv-Snapshot-Crc32"


async def _on_leader_streaming(request: web.Request,
                               local: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    ctx: HttpContext = request.app[CTX]
    if ctx.node.is_leader:
        return await local()
    if call_of(request).forwarded:
        return respond(no_leader_reply(ctx, "node is not the leader"))
    leader_http = ctx.registry.leader_http()
    if not leader_http:
        return respond(no_leader_reply(ctx, "no leader"))
    headers = {FORWARDED_BY: ctx.id}
    for name in ("Content-Type", "Authorization"):
        if request.headers.get(name):
            headers[name] = request.headers[name]
    url = URL(ctx.node_url(leader_http, origin_form(request.raw_path)), encoded=True)
    body = request.content if request.method == "POST" else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=max(60.0, leader_wait(ctx)))
    try:
        async with ctx.client.request(request.method, url, data=body, headers=headers,
                                      timeout=timeout, allow_redirects=False) as resp:
            out = web.StreamResponse(status=resp.status)
            for name in ("Content-Type", "Content-Length", "Content-Disposition", SERVED_BY,
                         SNAPSHOT_INDEX, SNAPSHOT_TERM, SNAPSHOT_CRC):
                if name in resp.headers:
                    out.headers[name] = resp.headers[name]
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(BACKUP_CHUNK):
                await out.write(chunk)
            await out.write_eof()
            return out
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        http_log.warn("failed to forward request to leader", leader=leader_http,
                      error=str(exc) or type(exc).__name__)
        return respond(unavailable(ctx.id, f"forwarding to the leader failed: {exc or type(exc).__name__}",
                                   request.method == "POST", ctx.registry.leader()))


async def handle_backup(request: web.Request) -> web.StreamResponse:
    """``GET /snapshot``: download a snapshot holding every acknowledged write
    (an aiohttp handler: it streams)."""
    ctx: HttpContext = request.app[CTX]

    async def local() -> web.StreamResponse:
        meta, f = await ctx.node.latest_snapshot()
        loop = asyncio.get_running_loop()
        try:
            resp = web.StreamResponse(headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="raftkv-{meta.term}-{meta.index}.snapshot"',
                SERVED_BY: ctx.id, SNAPSHOT_INDEX: str(meta.index), SNAPSHOT_TERM: str(meta.term),
                SNAPSHOT_CRC: str(ctx.node.snapshot_crc(meta.id))})
            resp.content_length = meta.size
            await resp.prepare(request)
            while chunk := await loop.run_in_executor(None, f.read, BACKUP_CHUNK):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            f.close()
    return await _on_leader_streaming(request, local)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def handle_restore(request: web.Request) -> web.StreamResponse:
    """``POST /restore``: the request body (a backup from ``GET /snapshot``)
    becomes the whole cluster's state (an aiohttp handler: it streams)."""
    ctx: HttpContext = request.app[CTX]

    async def local() -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        fd, path = await loop.run_in_executor(None, ctx.node.upload_file)
        try:
            with os.fdopen(fd, "wb") as f:
                received = 0
                async for chunk in request.content.iter_chunked(BACKUP_CHUNK):
                    received += len(chunk)
                    await loop.run_in_executor(None, f.write, chunk)
            if not received:
                raise BadRequest("body", "the request body must be a snapshot (raftkv snapshot save)")
            index, keys = await ctx.node.restore_backup(path)
        finally:
            await loop.run_in_executor(None, _unlink, path)
        http_log.info("restored backup", index=index, keys=keys, bytes=received)
        return respond(json_reply(ctx.id, {"index": index, "keys": keys, "bytes": received}))
    return await _on_leader_streaming(request, local)
