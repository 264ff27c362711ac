"""Backup and restore over HTTP: ``GET /snapshot`` and ``POST /restore``.

Snapshots can be far larger than any request body limit, so these two routes
stream: the backup from the snapshot file to the client, an upload from the
client to a file, and a follower relays both to the leader chunk by chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from yarl import URL

from raftkv import hclog

from .context import CTX, FORWARDED_BY, HttpContext, call_of
from .forward import leader_wait, no_leader_reply
from .params import BadRequest, origin_form
from .replies import SERVED_BY, json_reply, unavailable
from .routes import respond

http_log = hclog.get_logger("http")

__all__ = ["add_routes"]

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
    """GET /snapshot: download a snapshot holding every acknowledged write."""
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
    """POST /restore: the request body (a backup from GET /snapshot) becomes
    the whole cluster's state."""
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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/snapshot", handle_backup)
    app.router.add_post("/restore", handle_restore)
