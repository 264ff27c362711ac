"""Autopilot: promote healthy nonvoters to voters (leader only).

Theory of operation (hashicorp/raft-autopilot's StablePromoter, as Vault runs
it): ``join`` adds a server as a Nonvoter, so a node that is still catching
up never counts toward the quorum. Every ``RAFT_AUTOPILOT_INTERVAL`` (1s by
default; raft-autopilot reconciles every 10s, we are more eager because
learners watch the logs) the leader looks at each Nonvoter:

* *healthy* means it has answered the leader (``match_index > 0``), its last
  contact is within ``LastContactThreshold`` (10s), and its log is within
  ``MaxTrailingLogs`` (1000) entries of the leader's last index;
* *stable* means healthy without interruption for
  ``ServerStabilizationTime`` (10s), as this leader watched it: the clock
  starts at the first healthy check after the server joined (or after this
  node became leader, for a nonvoter that joined under an earlier leader)
  and restarts whenever a check finds it unhealthy. That is Vault's rule (a
  server must be healthy for ServerStabilizationTime after it joined).
  raft-autopilot's library default waives the time until autopilot itself
  has run that long, which promoted the first server joined to a fresh
  cluster within a second; a learner reading "stabilization" in the logs
  would then see no stabilization at all.

A stable Nonvoter is promoted: INFO ``Promoting server: id= address= name=``
on logger ``raft.autopilot``, then a ``ChangeMembership(AddVoter)``, after
which the core logs ``updating configuration: command=AddVoter ...``. Health
is read from the leader's replication progress inside the event loop, between
driver steps, so it is always a consistent view. The StablePromoter never
demotes and never moves leadership; neither do we.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from raftkv.config.settings import NodeSettings
from raftkv.observability import hclog
from raftkv.raft.configuration import ConfigCommand, Suffrage
from raftkv.raft.status import NodeStatus

from ..errors import RequestError

autopilot_log = hclog.get_logger("raft.autopilot")


def server_health(st: NodeStatus, server_id: str, last_contact_threshold: int,
                  max_trailing_logs: int) -> bool:
    """Whether a peer is healthy from the leader's point of view."""
    if not st.is_leader:
        return False
    if server_id == st.id:
        return True
    peer = st.peer(server_id)
    if peer is None or peer.match_index <= 0:
        return False
    if st.last_log_index == 0 or st.term == 0:
        return False
    if peer.last_contact > last_contact_threshold:
        return False
    return peer.match_index + max_trailing_logs >= st.last_log_index


def reachable_within(s: NodeSettings) -> int:
    """The longest silence after which ``/peers`` calls a server unhealthy.

    A reachable peer answers the leader's heartbeats several times per
    heartbeat timeout; one that has been silent for a whole heartbeat timeout
    would already be calling an election of its own if it were listening.
    Two heartbeat timeouts leave room for one slow answer on a loaded
    machine. Autopilot's LastContactThreshold (10s, as in Vault) is meant to
    ride out a slow follower before promotion; an operator asking "can the
    leader reach it?" needs the tighter answer. Never looser than the
    threshold."""
    return min(2 * s.heartbeat_timeout, s.last_contact_threshold)


class Autopilot:
    def __init__(self, status: Callable[[], NodeStatus],
                 change_membership: Callable[..., Awaitable[int]], s: NodeSettings, clock=None) -> None:
        self.status = status
        self.change_membership = change_membership
        self.interval = s.autopilot_interval / 1000
        self.stabilization = s.server_stabilization_time
        self.last_contact_threshold = s.last_contact_threshold
        self.max_trailing_logs = s.max_trailing_logs
        self.clock = clock or (lambda: int(time.monotonic() * 1000))
        self.running_since: int | None = None   # when this node became leader (for the logs)
        self.term: int | None = None
        self.stable_since: dict[str, int] = {}
        self.promoting: set[str] = set()

    def evaluate(self, now: int) -> list:
        """One reconcile round: the Nonvoters to promote now."""
        st = self.status()
        if not st.is_leader:
            if self.running_since is not None:
                autopilot_log.debug("autopilot is now stopped")
            self.running_since = None
            self.stable_since.clear()
            return []
        if self.running_since is None or self.term != st.term:
            self.running_since = now
            self.term = st.term
            self.stable_since.clear()
            autopilot_log.debug("autopilot is now running")
        required = self.stabilization
        promote = []
        nonvoters = [s for s in st.configuration.servers if s.suffrage is Suffrage.NONVOTER]
        for gone in set(self.stable_since) - {s.id for s in nonvoters}:
            del self.stable_since[gone]
        for server in nonvoters:
            if server_health(st, server.id, self.last_contact_threshold, self.max_trailing_logs):
                since = self.stable_since.setdefault(server.id, now)
                if now - since >= required and server.id not in self.promoting:
                    promote.append(server)
            else:
                self.stable_since.pop(server.id, None)
        return promote

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for server in self.evaluate(self.clock()):
                self.promoting.add(server.id)
                asyncio.get_running_loop().create_task(self._promote(server))

    async def _promote(self, server) -> None:
        autopilot_log.info("Promoting server", id=server.id, address=server.address, name=server.id)
        try:
            await self.change_membership(ConfigCommand.ADD_VOTER, server.id, server.address)
        except RequestError as exc:
            autopilot_log.error("failed to add raft voting peer", id=server.id, address=server.address,
                                error=exc.message)
        finally:
            self.promoting.discard(server.id)
