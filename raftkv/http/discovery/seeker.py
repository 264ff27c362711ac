"""The two clients of a starting node that find its cluster over HTTP:

* :class:`Forming` (``RAFT_BOOTSTRAP_EXPECT=N``, an empty volume): polls the
  seeds' ``GET /_raftkv/discovery`` each round, and does what
  :func:`.plan.decide` says: wait, join a seed already in a cluster, or
  found the cluster with the configuration all N agreed on.
* :func:`rejoin_by_identity` (a node with state): when the configuration
  has this node at another Raft address than the one it now listens on (a
  new container IP, a new port), asks the leader, through any member it can
  reach over HTTP, to move it (``POST /_raftkv/rejoin``), presenting its
  volume id. The others cannot reach it at all until then (a reply goes to
  the address the configuration names), so it is this node that dials.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp

from raftkv.config.settings import NodeSettings
from raftkv.observability import hclog

from ..api.handle import NodeHandle
from ..api.registry import Registry, node_url
from .plan import FormingState, Found, Join, Peer, Seen, Wait, configuration_of, decide, parse_seen, proposal_of

log = hclog.get_logger("discovery")

__all__ = ["Forming", "rejoin_by_identity"]

_POLL_TIMEOUT = aiohttp.ClientTimeout(total=2)


def _period(settings: NodeSettings) -> float:
    return max(0.1, min(1.0, settings.heartbeat_timeout / 2000))


class Forming:
    """RAFT_BOOTSTRAP_EXPECT: find the other servers, then found or join."""

    def __init__(self, node: NodeHandle, settings: NodeSettings, client: aiohttp.ClientSession,
                 registry: Registry, state: FormingState) -> None:
        self.node = node
        self.settings = settings
        self.client = client
        self.registry = registry
        self.state = state
        self._said: str | None = None
        self._unreachable: set[str] = set()

    def me(self) -> Peer:
        return Peer(self.node.id, self.node.raft_address, str(self.node.status().get("volume_id") or ""))

    async def run(self) -> None:
        s = self.settings
        log.info("looking for the other servers before forming a cluster", expect=s.bootstrap_expect,
                 seeds=list(s.join))
        while not self.node.configuration.servers:
            answers = await self._round()
            me = self.me()
            for a in answers:
                if a.peer.id != me.id and self.state.known.get(a.peer.id) != a.peer:
                    old = self.state.known.get(a.peer.id)
                    self.state.known[a.peer.id] = a.peer
                    log.info("found server" if old is None else "server changed", id=a.peer.id,
                             address=a.peer.address, volume=a.peer.volume, via=a.seed, member=a.member,
                             known=len(self.state.known) + 1, expect=s.bootstrap_expect)
            if len(self.state.known) + 1 == s.bootstrap_expect:
                self.state.proposal = proposal_of(me, self.state.known)
            else:
                self.state.proposal = None
            decision = decide(me, self.state.known, answers, s.bootstrap_expect)
            if isinstance(decision, Found):
                self.state.founded = decision.servers
                config = configuration_of(decision.servers)
                log.info("forming the cluster", reason=decision.reason, servers=config.describe())
                self.node.bootstrap(config)
                return
            if isinstance(decision, Join):
                log.info("not forming a cluster: joining the existing one", reason=decision.reason,
                         via=decision.seed)
                others = tuple(j for j in s.join if j != decision.seed)
                await self.registry.join_cluster((decision.seed,) + others)
                return
            self._say(decision)
            await asyncio.sleep(_period(s))
        log.info("not forming a cluster: this node is in one already")

    def _say(self, decision: Wait) -> None:
        if decision.reason == self._said:
            return
        self._said = decision.reason
        extra = {"unreachable": sorted(self._unreachable)} if self._unreachable else {}
        if decision.error:
            log.error(decision.reason, **extra)
        else:
            log.info("waiting to form the cluster", reason=decision.reason, **extra)

    async def _round(self) -> list[Seen]:
        results = await asyncio.gather(*(self._ask(seed) for seed in self.settings.join))
        return [r for r in results if r is not None]

    async def _ask(self, seed: str) -> Seen | None:
        try:
            async with self.client.get(seed + "/_raftkv/discovery", headers=self.registry.admin_headers(),
                                       timeout=_POLL_TIMEOUT) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}: {(await resp.text()).strip()[:200]}")
                seen = parse_seen(seed, await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            if seed not in self._unreachable:
                self._unreachable.add(seed)
                log.debug("seed not answering yet", seed=seed, error=str(exc) or type(exc).__name__)
            return None
        self._unreachable.discard(seed)
        return seen


async def rejoin_by_identity(node: NodeHandle, settings: NodeSettings, client: aiohttp.ClientSession,
                             registry: Registry) -> None:
    """A member that now listens at another Raft address than the
    configuration names asks the leader to update it (module doc)."""
    delay, warned = 0.2, False
    while True:
        me = node.configuration.get(node.id)
        if me is None or me.address == node.raft_address:
            if warned:
                log.info("the cluster has this node's new address", address=node.raft_address)
            return
        volume = str(node.status().get("volume_id") or "")
        if not warned:
            warned = True
            log.warn("this node listens at another address than the cluster knows it by; asking the leader "
                     "to update it, with this volume's identity as proof",
                     **{"old-address": me.address, "new-address": node.raft_address, "volume": volume})
        bases = list(settings.join)
        for server in node.configuration.servers:
            http = registry.http_address_of(server.id) if server.id != node.id else None
            if http and node_url(settings, http) not in bases:
                bases.append(node_url(settings, http))
        params = {"nodeId": node.id, "raftAddr": node.raft_address, "httpAddr": node.http_address,
                  "volume": volume}
        for base in bases:
            try:
                async with client.post(base + "/_raftkv/rejoin", params=params, headers=registry.admin_headers(),
                                       timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    body = (await resp.text()).strip()
                    if resp.status == 200:
                        log.info("address update accepted", via=base, response=body[:300])
                        break
                    if resp.status in (403, 404, 409):
                        # the cluster does not take this node for that member: retrying cannot help
                        log.error("address update refused, not retrying", via=base, error=body[:300])
                        return
                    error = f"HTTP {resp.status}: {body[:200]}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            log.debug("address update failed, trying the next member", via=base, error=error)
        else:
            log.warn("no member could update this node's address yet, will retry", tried=len(bases),
                     backoff=timedelta(seconds=delay))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
