"""Where each member serves HTTP, and joining a cluster over HTTP.

Followers forward to the leader's *HTTP* address, which Raft does not know.
Each node's HTTP address is replicated through the log as a reserved key
``"\\x00raftkv/http/<id>"`` of the key-value store: a leader writes its own
once its no-op has committed; a follower that finds its entry missing asks
the leader to write it (``POST /_raftkv/register``); and a join that carries
``httpAddr`` writes it right away. The registry thus survives restarts and
leader changes and lands in snapshots for free; the API refuses user keys
with the reserved prefix.

``RAFT_JOIN``: a new node asks a member to add it, with exponential backoff,
until it succeeds or a leader has added it by other means.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import aiohttp

from raftkv.config.settings import NodeSettings
from raftkv.node.errors import RequestError, ShuttingDown
from raftkv.observability import hclog
from raftkv.statemachine.commands import RESERVED_PREFIX, encode_delete, encode_set

from .handle import NodeHandle

http_log = hclog.get_logger("http")

__all__ = ["HTTP_KEY_PREFIX", "Registry", "node_url"]

HTTP_KEY_PREFIX = RESERVED_PREFIX + "http/"



def node_url(settings: NodeSettings, http_address: str, path: str = "") -> str:
    """The URL of ``path`` on a member's HTTP API. The advertised address is
    host:port; the scheme is this node's own (RAFT_TLS_* makes a cluster
    all-HTTPS, so every member serves what this one does)."""
    return f"{settings.http_scheme}://{http_address}{path}"


class Registry:
    def __init__(self, node: NodeHandle, settings: NodeSettings, client: aiohttp.ClientSession) -> None:
        self.node = node
        self.settings = settings
        self.client = client
        self._registering = False
        self._next_register_at = 0.0

    def http_address_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        if node_id == self.node.id:
            return self.node.http_address
        return self.node.get_local(HTTP_KEY_PREFIX + node_id)

    def leader_http(self) -> str | None:
        return self.http_address_of(self.node.leader_id)

    def leader(self) -> dict | None:
        """The known leader: id, Raft address and HTTP address (None once
        this node stops: it then reads nothing from its state machine, and
        this only decorates an answer, often the one saying so)."""
        st_leader = self.node.leader_id
        if not st_leader:
            return None
        try:
            http = self.http_address_of(st_leader)
        except ShuttingDown:
            http = None
        return {"id": st_leader, "address": self.node.leader_address or "", "http": http}

    async def register(self, node_id: str, http_address: str) -> int | None:
        """(Leader) record a node's HTTP address in the replicated registry."""
        if self.node.get_local(HTTP_KEY_PREFIX + node_id) == http_address:
            return None
        index, _ = await self.node.propose(encode_set(HTTP_KEY_PREFIX + node_id, http_address))
        return index

    async def register_quietly(self, node_id: str, http_address: str | None) -> None:
        """(Leader) :meth:`register`, if an address was given, on a best-effort
        basis: a node that was not registered registers itself later (housekeeping)."""
        if http_address:
            try:
                await self.register(node_id, http_address)
            except RequestError:
                pass

    async def forget(self, node_id: str) -> None:
        """(Leader) drop a removed server's registry entry; best effort."""
        if self.node.get_local(HTTP_KEY_PREFIX + node_id) is not None and not self.node.configuration.has(node_id):
            try:
                await self.node.propose(encode_delete(HTTP_KEY_PREFIX + node_id))
            except RequestError:
                pass

    def admin_headers(self) -> dict[str, str]:
        """With RAFT_CLUSTER_KEY: the bearer token admin routes require."""
        key = self.settings.cluster_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ------------------------------------------------------------------ this node's own entry

    async def keep_registered(self) -> None:
        """Keeps this node's HTTP address in the registry (see module doc)."""
        node = self.node
        period = max(0.1, min(1.0, self.settings.heartbeat_timeout / 2000))
        while True:
            await asyncio.sleep(period)
            if self._registering or node.get_local(HTTP_KEY_PREFIX + node.id) == node.http_address:
                continue
            if node.is_leader:
                if node.committed_in_term():
                    self._registering = True
                    node.loop.create_task(self._register_self_local())
            elif node.leader_id and node.configuration.has(node.id):
                leader_http = self.leader_http()
                if leader_http and time.monotonic() >= self._next_register_at:
                    self._registering = True
                    node.loop.create_task(self._register_self_remote(leader_http))

    async def _register_self_local(self) -> None:
        try:
            await self.register(self.node.id, self.node.http_address)
        except RequestError:
            pass
        finally:
            self._registering = False

    async def _register_self_remote(self, leader_http: str) -> None:
        try:
            url = node_url(self.settings, leader_http, "/_raftkv/register")
            async with self.client.post(url, params={"nodeId": self.node.id, "httpAddr": self.node.http_address},
                                        headers=self.admin_headers(),
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        finally:
            self._registering = False
        if not ok:
            self._next_register_at = time.monotonic() + 1.0

    # ------------------------------------------------------------------ joining

    async def join_cluster(self, bases: tuple[str, ...] | None = None) -> None:
        """RAFT_JOIN: ask a member to add us, with exponential backoff, until
        it succeeds or a leader has added us by other means. ``bases``: the
        members to ask, in order (default: RAFT_JOIN's)."""
        node = self.node
        delay = 0.2
        params = {"nodeId": node.id, "raftAddr": node.raft_address, "httpAddr": node.http_address}
        while True:
            if node.configuration.has(node.id) and node.leader_id:
                return
            for base in bases or self.settings.join:
                url = base + "/join"
                try:
                    async with self.client.post(url, params=params, headers=self.admin_headers(),
                                                timeout=aiohttp.ClientTimeout(total=15)) as resp:
                        body = await resp.text()
                        if resp.status == 200:
                            http_log.info("joined cluster", via=base, response=body.strip())
                            return
                        if resp.status == 409:
                            # the cluster knows this id at another address: retrying
                            # cannot help, the operator must move it on purpose
                            http_log.error("join refused, not retrying", via=base, error=body.strip()[:300])
                            return
                        error = f"HTTP {resp.status}: {body.strip()[:200]}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    error = str(exc) or type(exc).__name__
                http_log.warn("failed to join cluster, will retry", via=base, error=error,
                              backoff=timedelta(seconds=delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
