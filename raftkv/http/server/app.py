"""The HTTP side of a node: the aiohttp application, and the port's
listener with the fast path in front of it (:class:`HttpService`).

The app serves every row of the route table (:mod:`raftkv.http.routes`):
an API row through :func:`api_handler`, which builds the request's
:class:`~raftkv.http.api.context.Call` (its body read first where the row
says so), calls the route's function and answers its Reply, awaiting a
Pending one; an ``aiohttp`` row is mounted as it is. Its middlewares,
outermost first: request metrics and CORS (:mod:`raftkv.http.pages.dashboard`),
errors to JSON answers and the refusal of a path, query or header that is
not UTF-8 (here), the cluster key on admin routes (:mod:`raftkv.http.api.admin`).
The port's limits are :mod:`.limits`'.

:class:`HttpService` also runs the HTTP-address registry's upkeep and, with
``RAFT_JOIN``, the join client. With ``HTTP_WORKERS=N`` the public port
belongs to N worker processes (:mod:`raftkv.http.workers`) and this process
serves them on a unix socket (the fast path and the app, for what they
relay) and the link (:mod:`raftkv.http.workers.link`).
"""

from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
from aiohttp import web

from raftkv import hclog
from raftkv.config import NodeSettings
from raftkv.eventlog import ring_for
from raftkv.metrics import NodeMetrics
from raftkv.procstat import process_stats
from raftkv.tlsconfig import TlsContexts

from ..api import admin
from ..api.context import CTX, FORWARDED_BY, Call, HttpContext, call_of
from ..api.forward import on_leader
from ..api.handle import NodeHandle
from ..api.params import BadRequest, TooLarge, check_path, origin_form, parse_query
from ..api.registry import Registry
from ..api.replies import Pending, Reply, error_reply, json_reply, respond
from ..pages import dashboard, learn
from ..routes import ROUTES, Route, fast_routes
from ..workers.link import LinkServer, remove_socket_file, socket_path
from ..workers.pool import WorkerPool
from .fastpath import DEFAULT_WANTED_HEADERS, FastPath
from .limits import HttpLimits, JsonErrorHandler, raise_open_files_limit

http_log = hclog.get_logger("http")

__all__ = ["HttpService", "api_handler", "check_input", "create_app", "errors_middleware", "mount", "read_body",
           "strict_input_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- middleware -------------------------------------------------------------------

# the headers raftkv reads; aiohttp decodes any header as UTF-8 with
# surrogate escapes, which cannot be forwarded, compared or answered
_READ_HEADERS = ("Authorization", "Content-Type", "X-Forwarded-For", FORWARDED_BY, "Last-Event-ID")


def check_input(request: web.BaseRequest) -> None:
    """BadRequest for a path, query or read header that is not UTF-8:
    aiohttp's decoding would replace the bad bytes (``%ff`` and ``%fe``
    both becoming U+FFFD, the same key)."""
    target = origin_form(request.raw_path)
    path, _, query = target.partition("?")
    check_path(path)
    if query:
        parse_query(query.encode("utf-8", "surrogateescape"))
    headers = request.headers
    for name in _READ_HEADERS:
        value = headers.get(name)
        if value is not None and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(name, f"header {name} is not valid UTF-8") from None


@web.middleware
async def strict_input_middleware(request: web.Request, handler) -> web.StreamResponse:
    check_input(request)
    return await handler(request)


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    ctx: HttpContext = request.app[CTX]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            limit = ctx.max_body
            return respond(json_reply(ctx.id, {"error": f"request body over the limit of {limit} bytes",
                                               "param": "body", "limit": limit}, 413))
        return respond(json_reply(ctx.id, {"error": (exc.reason or "error").lower()}, exc.status))
    except asyncio.CancelledError:
        raise
    except ConnectionResetError as exc:
        # the client went away mid-request (aiohttp's "Connection lost"): the
        # answer reaches nobody, and is no error of ours
        http_log.debug("client closed the connection", method=request.method, path=request.path, error=str(exc))
        return respond(json_reply(ctx.id, {"error": "the connection was closed"}, 400))
    except web.RequestPayloadError as exc:
        # the body broke off or its chunked framing is bad: the client's fault
        cause = exc.__cause__ or exc.__context__
        text = (str(cause) if cause is not None else str(exc)).split("\n", 1)[0].rstrip(": ")
        return respond(json_reply(ctx.id, {"error": f"bad request body: {text}", "param": "body"}, 400))
    except Exception as exc:
        reply = error_reply(ctx.id, exc, ctx.registry.leader())
        if reply is not None:
            return respond(reply)
        http_log.error("internal error serving request", method=request.method, path=request.path,
                       error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return respond(json_reply(ctx.id, {"error": f"internal error: {type(exc).__name__}"}, 500))


# --- the routes ------------------------------------------------------------------

async def read_body(request: web.Request) -> bytes:
    """The request's body, refused (413) over ``HTTP_MAX_BODY``."""
    limit = request.app[CTX].max_body
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge("body", request.content_length, limit)
    return await request.read()


def api_handler(fn: Callable[[HttpContext, Call], Reply | Pending], reads_body: bool) -> Handler:
    """An API route's function as an aiohttp handler."""
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await read_body(request) if reads_body and request.can_read_body else b""
        outcome = fn(request.app[CTX], call_of(request, body))
        if outcome.__class__ is not Reply:
            outcome = await outcome
        return respond(outcome)
    return handle


def mount(app: web.Application, table: Iterable[Route]) -> None:
    """Add the routes of ``table`` to the app's router."""
    for route in table:
        handler = route.fn if route.aiohttp else api_handler(route.fn, route.body)
        if route.method == "GET" and route.head:
            app.router.add_route("HEAD", route.path, handler)
        app.router.add_route(route.method, route.path, handler)


def create_app(ctx: HttpContext) -> web.Application:
    app = web.Application(middlewares=[dashboard.observe_middleware, errors_middleware, strict_input_middleware,
                                       admin.require_cluster_key],
                          client_max_size=ctx.max_body)
    app[CTX] = ctx
    dashboard.prepare(app)
    learn.prepare(app)
    mount(app, ROUTES)
    return app


class HttpService:
    """The node's HTTP port, and the HTTP side's background work."""

    def __init__(self, node: NodeHandle, settings: NodeSettings, metrics: NodeMetrics | None,
                 tls: TlsContexts | None = None) -> None:
        self.node = node
        self.tls = tls  # RAFT_TLS_*: serve HTTPS, and speak it to the other members
        self.settings = settings
        self.metrics = metrics
        self.client: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.ctx: HttpContext | None = None
        self.fast: FastPath | None = None
        self.listener = None
        self.internal_path: str | None = None
        self.link: LinkServer | None = None
        self.workers: WorkerPool | None = None

    async def start(self) -> None:
        s = self.settings
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.apply_timeout / 1000 + 5, connect=3),
            connector=aiohttp.TCPConnector(limit=256, **({"ssl": self.tls.https_client} if self.tls else {})))
        registry = Registry(self.node, s, self.client)
        self.ctx = ctx = HttpContext(self.node, s, self.client, registry, self.metrics, ring_for(self.node.id),
                                     leader_runner=on_leader, processes=self.processes)
        if self.metrics is not None:
            self.metrics.watch_processes(self.processes)
        limits = HttpLimits.from_settings(s)
        if s.http_workers:
            limits = limits.for_relays()  # the public port is the workers'
        raise_open_files_limit(limits, http_log)
        self.runner = web.AppRunner(create_app(ctx), access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                    **limits.aiohttp_kwargs())
        await self.runner.setup()
        # Every connection starts on the fast path, which serves the table's
        # fast rows (GET /get, GET /set) itself and hands anything else to
        # the app's server.
        self.fast = FastPath(
            fast_routes(ctx), fallback=lambda: None,
            observe=self.metrics.http_request if self.metrics is not None else None,
            wanted_headers=DEFAULT_WANTED_HEADERS + ("content-type",),
            errors=lambda exc: error_reply(ctx.id, exc, ctx.known_leader()), served_by=ctx.id,
            log=http_log, **limits.fast_path_kwargs())
        self.fast.fallback = JsonErrorHandler.factory(self.runner.server, self.node.loop, self.fast, ctx.id, http_log,
                                                      limits, access_log=None)
        if s.http_workers:
            await self._start_workers(registry)
        else:
            # with TLS the fast path reads decrypted bytes from the SSL
            # transport, and its hand-over to aiohttp passes that transport on
            self.listener = await self.node.loop.create_server(
                self.fast, s.bind_addr, s.http_port, reuse_address=True,
                ssl=self.tls.https_server if self.tls else None)
        http_log.info("HTTP API listening", bind=f"{s.bind_addr}:{s.http_port}",
                      advertise=self.node.http_address, workers=s.http_workers, scheme=s.http_scheme)
        self.node.spawn(registry.keep_registered(), "raftkv-registry")
        if s.join:
            if self.node.had_state:
                http_log.info("not joining: node has existing state and rejoins as it was", join=list(s.join))
            else:
                self.node.spawn(registry.join_cluster(), "raftkv-join")

    async def _start_workers(self, registry: Registry) -> None:
        """The public port goes to the workers; this process serves them on
        an internal listener (what they relay) and the link (reads and
        writes). See raftkv.http.workers.worker."""
        s = self.settings
        self.internal_path = socket_path(s.data_dir, "http.sock")
        remove_socket_file(self.internal_path)
        self.listener = await self.node.loop.create_unix_server(self.fast, self.internal_path)
        self.link = LinkServer(self.node, registry.leader)
        link_path = socket_path(s.data_dir, "link.sock")
        await self.link.start(link_path)
        self.workers = WorkerPool(s, self.link, {
            "node_id": self.node.id, "bind": s.bind_addr, "port": s.http_port, "link": link_path,
            "internal": self.internal_path, "state_machine": self.node.state_machine_path,
            "max_body": s.max_body, "apply_timeout": s.apply_timeout / 1000,
            "limits": HttpLimits.from_settings(s).to_spec(),
            "log_level": s.log_level, "log_format": s.log_format})
        await self.workers.start()

    def processes(self) -> list[dict]:
        """This node's processes with their CPU time and RSS."""
        if self.workers is not None:
            return self.workers.processes()
        row = process_stats("raft", os.getpid())
        return [row] if row is not None else []

    async def stop(self) -> None:
        if self.workers is not None:
            await self.workers.stop()
        if self.link is not None:
            self.link.close()
        if self.listener is not None:
            self.listener.close()
            self.fast.close()
        if self.internal_path is not None:
            remove_socket_file(self.internal_path)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.close()
