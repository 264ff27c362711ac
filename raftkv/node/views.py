"""What the node shows of itself: ``/status``, ``/peers`` and the log the dashboard reads.

Theory of operation: the runtime (:mod:`raftkv.node.runtime`) drives the core;
these functions shape a :class:`~raftkv.raft.status.NodeStatus` (the core's
frozen picture of itself) and a few facts the runtime adds (what the state
machine has applied, the node's addresses) into the JSON the HTTP side
serves. They read, never change, anything.
"""

from __future__ import annotations

from raftkv.config.settings import NodeSettings
from raftkv.observability.procstat import rss_bytes
from raftkv.raft.messages import Entry
from raftkv.raft.node import RaftNode
from raftkv.raft.status import NodeStatus

from .policies.autopilot import reachable_within, server_health

__all__ = ["LogView", "peers_view", "readiness_view", "status_view"]


def status_view(st: NodeStatus, *, node_id: str, stopping: bool, applied: int, raft_address: str,
                http_address: str, num_keys: int, fault_injection: bool) -> dict:
    """hashicorp Stats()-style state of a node, as ``/status`` serves it."""
    leader = {"id": st.leader_id, "address": st.leader_address or ""} if st.leader_id else None
    return {
        "id": node_id,
        "state": "Shutdown" if stopping else st.role,
        "term": st.term,
        "last_log_index": st.last_log_index,
        "last_log_term": st.last_log_term,
        "commit_index": st.commit_index,
        "applied_index": applied,
        "fsm_pending": max(0, st.commit_index - applied),
        "last_snapshot_index": st.last_snapshot_index,
        "last_snapshot_term": st.last_snapshot_term,
        "last_contact": None if st.last_contact < 0 else st.last_contact,
        "num_peers": sum(1 for v in st.configuration.voters if v != node_id),
        "leader": leader,
        "latest_configuration": [s.to_dict() for s in st.configuration.servers],
        "latest_configuration_index": st.configuration_index,
        "protocol_version": 3,
        "raft_address": raft_address,
        "http_address": http_address,
        "num_keys": num_keys,
        "rss_bytes": rss_bytes(),
        "fault_injection": fault_injection,
        "volume_id": st.volume_id,
        # why this node may not vote or campaign now (its volume is not
        # the one it was admitted with), or null: docs/disks.md
        "amnesia_guard": st.amnesia_guard,
    }


def readiness_view(st: NodeStatus, *, applied: int, contact_age: int | None, stale_after: int,
                   stopping: bool, upto: int | None = None) -> dict:
    """``/readyz``'s body: ready once the node has a leader and has applied
    what that leader had committed as of its last contact with it (a leader:
    its own commit index, once an entry of its term is committed).

    ``contact_age`` is the wall-clock age of that contact, not the core's:
    a process that was frozen still holds the leader it knew before, whose
    commit index has moved on since; beyond ``stale_after`` (the heartbeat
    timeout, when a follower would campaign) it counts as no leader.
    ``upto`` caps the index to reach at the leader's commit index as the
    leader confirmed it to this request (a read index): what it announced
    since is not this request's to wait for."""
    leader = st.leader_id
    target = st.leader_commit if upto is None else min(st.leader_commit, upto)
    reason = None
    if stopping:
        reason = "shutting down"
    elif leader is None:
        reason = "no leader"
    elif st.is_leader and not st.committed_in_term:
        reason = f"leader {leader} has not yet committed an entry of its term {st.term}"
    elif not st.is_leader and (contact_age is None or contact_age > stale_after):
        reason = f"no contact with leader {leader} for {contact_age}ms"
    elif applied < target:
        whose = "its own commit index" if st.is_leader else f"leader {leader}'s commit index at last contact"
        reason = f"applied {applied} of {target} ({whose})"
    body: dict = {"ready": reason is None}
    if reason is not None:
        body["reason"] = reason
    body.update(state=st.role, leader=leader, applied_index=applied, leader_commit_index=target,
                last_contact=contact_age)
    return body


def peers_view(st: NodeStatus, node_id: str, settings: NodeSettings) -> list[dict]:
    """Every server of the configuration with what this node knows of it;
    a leader adds replication progress (``match_index``, ``lag_entries``
    = its last index - the match index) and health."""
    out = []
    for server in st.configuration.servers:
        row: dict[str, object] = {"id": server.id, "address": server.address, "suffrage": server.suffrage.value,
                                  "leader": server.id == st.leader_id, "last_contact": None, "healthy": None,
                                  "lag_entries": None}
        peer = st.peer(server.id)
        if st.is_leader:
            if server.id == node_id:
                row.update(last_contact=0, healthy=True, match_index=st.last_log_index, lag_entries=0)
            elif peer is not None:
                # what the follower still lacks of the leader's log
                lag = max(0, st.last_log_index - peer.match_index)
                row.update(last_contact=peer.last_contact, match_index=peer.match_index, lag_entries=lag,
                           healthy=server_health(st, server.id, reachable_within(settings),
                                                 settings.max_trailing_logs))
        elif server.id == st.leader_id and st.last_contact >= 0:
            row["last_contact"] = st.last_contact
        elif server.id == node_id:
            row["last_contact"] = 0
        out.append(row)
    return out


class LogView:
    """A read-only look at the core's in-memory log: bounds, and the entries it holds."""

    __slots__ = ("first_index", "last_index", "base_index", "base_term", "commit_index", "_raft")

    def __init__(self, raft: RaftNode) -> None:
        st = raft.status()
        self._raft = raft
        self.first_index, self.last_index = st.first_index, st.last_log_index
        self.base_index, self.base_term = st.base_index, st.base_term
        self.commit_index = st.commit_index

    def term_at(self, index: int) -> int | None:
        return self._raft.term_at(index)

    def entries(self, lo: int, hi: int) -> tuple[Entry, ...]:
        return self._raft.entries(lo, hi)
