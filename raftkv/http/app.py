"""The HTTP side of a node: the aiohttp application and its listener.

The app's middlewares, outermost first: request metrics and CORS
(:mod:`.dashboard`), errors to JSON answers (:mod:`.routes`), the cluster
key on admin routes (:mod:`.admin`). :class:`HttpService` also runs the
HTTP-address registry's upkeep and, with ``RAFT_JOIN``, the join client.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from raftkv import hclog
from raftkv.config import NodeSettings
from raftkv.eventlog import ring_for
from raftkv.metrics import NodeMetrics
from raftkv.node.runtime import Node

from . import admin, backup, dashboard, routes
from .context import CTX, Call, HttpContext
from .fastpath import DEFAULT_WANTED_HEADERS, FastPath, FastRequest
from .kv import read_key, write_key
from .registry import Registry
from .replies import Reply, error_reply

http_log = hclog.get_logger("http")

__all__ = ["HttpService", "create_app"]


def create_app(ctx: HttpContext) -> web.Application:
    app = web.Application(middlewares=[dashboard.observe_middleware, routes.errors_middleware,
                                       admin.require_cluster_key],
                          client_max_size=ctx.max_body)
    app[CTX] = ctx
    dashboard.add_routes(app)  # /ui, /metrics, /debug/*
    routes.add_routes(app)
    backup.add_routes(app)
    admin.add_admin_routes(app)
    return app


def _fast_route(ctx: HttpContext, operation):
    """A data-plane operation as a fast-path route. The fast routes are not
    admin routes (no cluster key), and need no CORS header."""
    async def route(query: dict[str, str], request: FastRequest) -> Reply:
        call = Call(request.method, request.target, query, request.headers, request.remote)
        try:
            return await operation(ctx, call)
        except Exception as exc:
            reply = error_reply(ctx.id, exc, ctx.registry.leader())
            if reply is None:
                raise  # a bug: the fast path answers 500 and logs it
            return reply
    return route


class HttpService:
    """The node's HTTP port, and the HTTP side's background work."""

    def __init__(self, node: Node, settings: NodeSettings, metrics: NodeMetrics | None) -> None:
        self.node = node
        self.settings = settings
        self.metrics = metrics
        self.client: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.ctx: HttpContext | None = None
        self.fast: FastPath | None = None
        self.listener = None

    async def start(self) -> None:
        s = self.settings
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.apply_timeout / 1000 + 5, connect=3),
            connector=aiohttp.TCPConnector(limit=256))
        registry = Registry(self.node, s, self.client)
        self.ctx = ctx = HttpContext(self.node, s, self.client, registry, self.metrics, ring_for(self.node.id))
        # A value may travel in the query string (GET /set?key=k&value=...), so
        # the request line must be able to hold one over the limit: then the
        # handler answers 413 instead of the parser answering 400.
        line = 3 * s.max_body + 16 * 1024
        self.runner = web.AppRunner(create_app(ctx), access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                    max_line_size=line, max_field_size=max(8190, 16 * 1024))
        await self.runner.setup()
        # Every connection starts on the fast path, which serves GET /get and
        # GET /set itself and hands anything else to the app's server.
        self.fast = FastPath(
            {(b"GET", "/get"): _fast_route(ctx, read_key), (b"GET", "/set"): _fast_route(ctx, write_key)},
            fallback=self.runner.server,
            observe=self.metrics.http_request if self.metrics is not None else None,
            wanted_headers=DEFAULT_WANTED_HEADERS + ("content-type",),
            max_head=line + 16 * 1024,
            log=hclog.get_logger("http"))
        self.listener = await self.node.loop.create_server(self.fast, s.bind_addr, s.http_port, reuse_address=True)
        http_log.info("HTTP API listening", bind=f"{s.bind_addr}:{s.http_port}",
                      advertise=self.node.http_address)
        self.node.spawn(registry.keep_registered(), "raftkv-registry")
        if s.join:
            if self.node.had_state:
                http_log.info("not joining: node has existing state and rejoins as it was", join=list(s.join))
            else:
                self.node.spawn(registry.join_cluster(), "raftkv-join")

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.fast.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.close()
