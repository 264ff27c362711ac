"""The learning page's live source over HTTP: ``/debug/steps`` on every node, ``/ui/learn/live`` on the serving one.

Theory of operation: every node serves its own Raft core's steps at
``/debug/steps`` (server-sent events) from the node's
:class:`~raftkv.learn.live.StepTap`: the tap records steps only while such a
stream is open. The page asks the node that served it for
``/ui/learn/live``; that node reads every member's steps (its own tap
directly, each other member's ``/debug/steps`` at the HTTP address in the
registry, as ``/ui/stream`` relays ``/debug/stream``), merges them into the
simulator's frames (:class:`~raftkv.learn.merge.Merge`: time order, a
message's send paired with its receipt, lost messages) and streams the
frames. A member that cannot be reached (or whose stream breaks) is reported
in a ``member`` event with the reason, drawn as down, and tried again every
``RETRY_S`` seconds; the stream goes on with the others. The member list is
the serving node's latest configuration, read again every second.

Rules as for the dashboard's streams: ``/debug/steps`` is a ``/debug`` route,
so with ``RAFT_CLUSTER_KEY`` it needs the key like ``/debug/stream``, and any
origin may read it (CORS ``*``); ``/ui/learn/live`` is open like
``/ui/stream`` and readable by the members' own pages
(:func:`~raftkv.http.pages.dashboard.member_cors_headers`). The relay passes on the
caller's ``Authorization`` header and nothing else, so with a cluster key a
page (a browser's EventSource sends none) sees the serving node only, and the
other members are reported ``up: false`` with "answered HTTP 401".

Routes (server-sent events; ``data`` is one line of JSON):

============================  ================================================================
``GET /debug/steps``           ``hello`` ``{"id", "node", "t", "seq", "view"}`` (the node's view
                               now), then one ``step`` event per step record
                               (:mod:`raftkv.learn.live`: ``{"node", "t", "seq", "event",
                               "sends", "logs", "narration", "view"}``), ``skipped``
                               ``{"node", "skipped": N}`` when this stream fell more than
                               5,000 records behind and lost N, and a ``: keep-alive``
                               comment after 10 s without a record
``GET /ui/learn/live``         ``?heartbeats=0`` leaves heartbeats out. ``hello`` ``{"node",
                               "members", "heartbeats", "hold_ms", "lost_ms"}``; ``member``
                               ``{"id", "up": true}`` when a member's stream opens, ``{"id",
                               "up": false, "why"}`` when it cannot be reached or breaks;
                               ``frame`` (the simulator's frame shape, see
                               :mod:`raftkv.learn.world`), each ~300 ms after its step;
                               ``skipped`` ``{"node", "skipped": N}`` when records of a
                               member were lost (a stream or this merge fell behind);
                               a ``: keep-alive`` comment after 1 s without an event
============================  ================================================================
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp
from aiohttp import web

from raftkv.learn.live import StepTap
from raftkv.learn.merge import HOLD_MS, LOST_MS, Merge, SseParser

from ..api.context import CTX, HttpContext
from ..api.params import BadRequest
from .dashboard import SSE_HEADERS, member_cors_headers

__all__ = ["handle_live", "handle_steps"]

STEPS_KEEPALIVE = 10.0       # seconds without a record before /debug/steps sends a comment
READ_TIMEOUT = 2.5 * STEPS_KEEPALIVE  # a member's stream this silent is hung (paused, cut off)
CONNECT_TIMEOUT = 3.0        # seconds to reach a member before it is reported unreachable
RETRY_S = 2.0                # how soon an unreachable member is tried again
TICK_S = 0.05                # how often /ui/learn/live merges and writes
LIVE_KEEPALIVE = 1.0         # /ui/learn/live writes at least this often: a page gone is noticed
STOP_CHECK_S = 0.5           # how often an idle /debug/steps looks whether the node stops or the reader left
MEMBERS_EVERY_S = 1.0        # how often it looks at the configuration for members


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _event(name: str, body: Any) -> bytes:
    return f"event: {name}\ndata: {_dumps(body)}\n\n".encode()


def _record_event(record: dict) -> bytes:
    return _event("skipped" if "skipped" in record else "step", record)


def _gone(request: web.Request) -> bool:
    """The reader hung up (seen without writing: a quiet stream writes seldom)."""
    transport = request.transport
    return transport is None or transport.is_closing()


# --- /debug/steps ------------------------------------------------------------------------

async def handle_steps(request: web.Request) -> web.StreamResponse:
    """This node's step records, as they happen (see the module docstring)."""
    ctx: HttpContext = request.app[CTX]
    node = ctx.node
    tap: StepTap = node.steps
    resp = web.StreamResponse(headers={**SSE_HEADERS, "Access-Control-Allow-Origin": "*"})
    await resp.prepare(request)
    wake = asyncio.Event()
    sub = tap.subscribe(wake.set)
    try:
        await resp.write(_event("hello", tap.hello()))
        last_write = time.monotonic()
        while not node.stopping:
            try:
                # a short wait, so that a node shutting down or a reader gone ends the stream soon
                async with asyncio.timeout(STOP_CHECK_S):
                    await wake.wait()
            except TimeoutError:
                if _gone(request):
                    break
                if time.monotonic() - last_write >= STEPS_KEEPALIVE:
                    await resp.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                continue
            wake.clear()
            records = sub.take()
            if records:
                await resp.write(b"".join(_record_event(r) for r in records))
                last_write = time.monotonic()
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass  # the reader went away, or the node is shutting down
    finally:
        tap.unsubscribe(sub)
    return resp


# --- /ui/learn/live ----------------------------------------------------------------------

def _heartbeats(request: web.Request) -> bool:
    raw = request.query.get("heartbeats", "1").lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise BadRequest("heartbeats", f"invalid heartbeats {raw!r}: expected 1 or 0")


def _members(ctx: HttpContext) -> list[str]:
    ids = [s.id for s in ctx.node.configuration.servers]
    return ids if ctx.id in ids else [ctx.id, *ids]


def _failure(member: str, http: str, exc: BaseException, streaming: bool) -> str:
    """Why a member's stream could not be read, in words."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        why = os.strerror(err.errno) if err.errno else (str(err) or "connection failed")
        return f"cannot reach {member} at {http}: {why.lower()}"
    if isinstance(exc, TimeoutError):
        if streaming:
            return f"{member} at {http} went silent for {READ_TIMEOUT:g}s"
        return f"{member} at {http} did not answer within {CONNECT_TIMEOUT:g}s"
    if streaming:
        return f"{member} at {http} stopped streaming (the node stopped, or the connection broke)"
    return f"cannot reach {member} at {http}: {exc or type(exc).__name__}"


class _Live:
    """One page's live stream: the merge, and a reader per other member."""

    def __init__(self, ctx: HttpContext, merge: Merge, authorization: str | None) -> None:
        self.ctx = ctx
        self.merge = merge
        self.authorization = authorization
        self.out: list[bytes] = []                      # events to write next
        self.readers: dict[str, asyncio.Task] = {}
        self._reported: dict[str, tuple[bool, str | None]] = {}

    def report(self, member: str, up: bool, why: str | None = None) -> None:
        if up:
            self.merge.member_up(member)
        else:
            self.merge.member_down(member, why or "unreachable")
        if self._reported.get(member) == (up, why):
            return
        self._reported[member] = (up, why)
        self.out.append(_event("member", {"id": member, "up": True} if up
                               else {"id": member, "up": False, "why": why}))

    def sync_members(self) -> None:
        members = _members(self.ctx)
        if members != self.merge.members:
            self.merge.set_members(members)
        for member in members:
            if member != self.ctx.id and member not in self.readers:
                self.readers[member] = asyncio.get_running_loop().create_task(
                    self.follow(member), name=f"raftkv-learn-live-{member}")
        for member in list(self.readers):
            if member not in members:
                self.readers.pop(member).cancel()
                self._reported.pop(member, None)

    async def follow(self, member: str) -> None:
        while True:
            why = await self._read(member)
            self.report(member, False, why)
            await asyncio.sleep(RETRY_S)

    async def _read(self, member: str) -> str:
        """Read a member's /debug/steps into the merge until it ends; why it ended."""
        ctx = self.ctx
        try:
            http = ctx.registry.http_address_of(member)
        except Exception:  # this node is stopping: it reads nothing any more
            http = None
        if not http:
            return f"the HTTP address of {member} is not known yet"
        headers = {"Accept": "text/event-stream"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
        streaming = False
        try:
            async with ctx.client.get(ctx.node_url(http, "/debug/steps"), headers=headers,
                                      timeout=timeout) as upstream:
                if upstream.status != 200:
                    return f"{member} at {http} answered HTTP {upstream.status}"
                parser = SseParser()
                merge = self.merge
                async for chunk in upstream.content.iter_any():
                    for name, data in parser.feed(chunk):
                        if name == "hello":
                            streaming = True
                            merge.hello(member, json.loads(data).get("view"))
                            self.report(member, True)
                        elif name in ("step", "skipped"):
                            merge.add(json.loads(data))
            return f"{member} at {http} closed its stream"
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return _failure(member, http, exc, streaming)

    def close(self) -> None:
        for task in self.readers.values():
            task.cancel()


async def handle_live(request: web.Request) -> web.StreamResponse:
    """Every member's steps merged into frames (see the module docstring)."""
    ctx: HttpContext = request.app[CTX]
    node = ctx.node
    heartbeats = _heartbeats(request)
    merge = Merge(_members(ctx), heartbeats=heartbeats)
    live = _Live(ctx, merge, request.headers.get("Authorization"))
    resp = web.StreamResponse(headers={**SSE_HEADERS, **member_cors_headers(request)})
    await resp.prepare(request)
    tap: StepTap = node.steps
    sub = tap.subscribe()
    try:
        live.out.append(_event("hello", {"node": ctx.id, "members": merge.members, "heartbeats": heartbeats,
                                         "hold_ms": HOLD_MS, "lost_ms": LOST_MS}))
        merge.hello(ctx.id, tap.hello()["view"])
        live.report(ctx.id, True)
        live.sync_members()
        members_at = last_write = time.monotonic()
        while not node.stopping and not _gone(request):
            now = time.monotonic()
            if now - members_at >= MEMBERS_EVERY_S:
                live.sync_members()
                members_at = now
            for record in sub.take():
                merge.add(record)
            for member, count in merge.take_skipped().items():
                live.out.append(_event("skipped", {"node": member, "skipped": count}))
            for frame in merge.frames(time.time() * 1000):
                live.out.append(_event("frame", frame))
            if live.out:
                chunk, live.out = b"".join(live.out), []
                await resp.write(chunk)
                last_write = now
            elif now - last_write >= LIVE_KEEPALIVE:
                await resp.write(b": keep-alive\n\n")
                last_write = now
            await asyncio.sleep(TICK_S)
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass  # the page went away, or the node is shutting down
    finally:
        live.close()
        tap.unsubscribe(sub)
    return resp
