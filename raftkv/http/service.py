"""The HTTP side of a node: the port's listener, with the fast path
(:mod:`raftkv.http.server.fastpath`) in front of the aiohttp application
(:mod:`raftkv.http.server.app`), and the HTTP side's background work.

:class:`HttpService` also runs the HTTP-address registry's upkeep and, with
``RAFT_JOIN``, the join client. With ``HTTP_WORKERS=N`` the public port
belongs to N worker processes (:mod:`raftkv.http.workers`) and this process
serves them on a unix socket (the fast path and the app, for what they
relay) and the link (:mod:`raftkv.http.workers.link`).
"""

from __future__ import annotations

import os

import aiohttp
from aiohttp import web

from raftkv.config.settings import NodeSettings
from raftkv.config.tls import TlsContexts
from raftkv.observability import hclog
from raftkv.observability.eventlog import ring_for
from raftkv.observability.metrics import NodeMetrics
from raftkv.observability.procstat import process_stats

from .api.context import HttpContext
from .api.forward import on_leader
from .api.handle import NodeHandle
from .api.registry import Registry
from .api.replies import error_reply
from .discovery.plan import FormingState
from .discovery.seeker import Forming, rejoin_by_identity
from .routes import fast_routes
from .server.app import create_app
from .server.fastpath import DEFAULT_WANTED_HEADERS, FastPath
from .server.limits import HttpLimits, JsonErrorHandler, raise_open_files_limit
from .workers.leaseboard import LeaseBoard
from .workers.link import LinkServer, remove_socket_file, socket_path
from .workers.pool import WorkerPool

http_log = hclog.get_logger("http")

__all__ = ["HttpService"]


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
                                     leader_runner=on_leader, processes=self.processes,
                                     forming=FormingState(s.bootstrap_expect) if s.bootstrap_expect else None)
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
        if self.node.had_state:
            if s.join or s.bootstrap_expect:
                http_log.info("not joining: node has existing state and rejoins as it was", join=list(s.join))
            # a member restarted at another address asks to be moved (raftkv.http.discovery)
            self.node.spawn(rejoin_by_identity(self.node, s, self.client, registry), "raftkv-rejoin")
        elif s.bootstrap_expect:
            forming = Forming(self.node, s, self.client, registry, ctx.forming)
            self.node.spawn(forming.run(), "raftkv-forming")
        elif s.join:
            self.node.spawn(registry.join_cluster(), "raftkv-join")

    async def _start_workers(self, registry: Registry) -> None:
        """The public port goes to the workers; this process serves them on
        an internal listener (what they relay) and the link (reads and
        writes). See raftkv.http.workers.worker."""
        s = self.settings
        self.internal_path = socket_path(s.data_dir, "http.sock")
        remove_socket_file(self.internal_path)
        self.listener = await self.node.loop.create_unix_server(self.fast, self.internal_path)
        # lease reads served by the workers themselves; none under hashicorp's
        # protocol, whose core keeps no read lease
        board = LeaseBoard(os.path.join(s.data_dir, "http-lease"), writer=True)
        self.link = LinkServer(self.node, registry.leader, board, s.read_lease)
        link_path = socket_path(s.data_dir, "link.sock")
        await self.link.start(link_path)
        self.workers = WorkerPool(s, self.link, {
            "node_id": self.node.id, "bind": s.bind_addr, "port": s.http_port, "link": link_path,
            "internal": self.internal_path, "state_machine": self.node.state_machine_path,
            "lease_board": board.path,
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
