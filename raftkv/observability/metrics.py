"""Prometheus metrics of one node, named after hashicorp/raft's (``GET /metrics``).

Theory of operation: every node has its own ``CollectorRegistry`` (never the
process-global one, so several nodes in one process never mix). Two kinds of
metric live in it:

* *read at scrape time* -- role, term, commit/applied/last index, snapshot
  index, last contact per peer -- by :class:`_RaftCollector`, which looks at
  the node when Prometheus asks and costs nothing in between;
* *counted as things happen* -- commit and apply time histograms,
  AppendEntries RPCs and entries per peer, role transitions (elections),
  snapshots taken and installed, HTTP requests by route and status. These are
  plain counter increments and histogram observations, no logging, no
  allocation beyond prometheus-client's own.

``raftkv.main`` creates one :class:`NodeMetrics` per node and hands it to
the node's runtime, which reports to it where things happen (proposal
committed, batch applied, role change, snapshot taken or installed, message
sent), each a plain increment or observation behind one ``is not None``; the
HTTP side counts requests. :meth:`NodeMetrics.watch` names the node the
gauges are read from. This module imports neither side.

Names (Prometheus style of hashicorp's go-metrics keys):

=====================================================  ===========================================
``raft_state{state}``                                   1 for the node's current role, else 0
``raft_term`` / ``raft_commit_index`` /                 the node's Raft state (Stats())
``raft_applied_index`` / ``raft_last_log_index`` /
``raft_last_snapshot_index`` / ``raft_fsm_pending``
``raft_peers``                                          voters besides this node
``raft_leader_last_contact_seconds{peer}``              (leader) since each follower last answered
``raft_last_contact_seconds``                           (follower) since the leader was last heard
``raft_replication_lag_entries{peer}``                  (leader) entries each follower lacks
``raft_commit_time_seconds``                            proposal to committed and applied (leader)
``raft_fsm_apply_seconds``                              applying one batch of committed entries
``raft_replication_append_entries_rpc_total{peer}``     AppendEntries sent (heartbeats not counted)
``raft_replication_append_entries_logs_total{peer}``    entries carried by them
``raft_replication_heartbeat_total{peer}``              heartbeats sent
``raft_election_request_vote_rpc_total{peer,kind}``     vote requests sent (kind: vote, pre-vote)
``raft_state_candidate_total`` / ``_leader_total`` /    role transitions: elections started and won,
``raft_state_follower_total``                           steps down
``raft_snapshot_create_total``                          snapshots taken
``raft_snapshot_installed_total``                       snapshots received from a leader
``raftkv_http_requests_total{route,method,status}``     HTTP requests answered
``raftkv_http_request_duration_seconds{route}``         and how long they took
=====================================================  ===========================================
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from ..raft.messages import AppendEntries, RequestVote

__all__ = ["CONTENT_TYPE_LATEST", "NodeMetrics", "NodeViews"]

# No ``*_created`` series: they double the output and nothing here reads them.
disable_created_metrics()

ROLES = ("Follower", "Candidate", "Leader", "Shutdown")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeViews(Protocol):
    """What the gauges are read from at scrape time (a ``raftkv.node.Node``)."""

    def status(self) -> dict: ...
    def peers(self) -> list[dict]: ...


class _ProcessCollector:
    """CPU time and RSS of each of the node's processes (the Raft process and
    its HTTP workers), read at scrape time."""

    def __init__(self) -> None:
        self.processes: Callable[[], list[dict]] | None = None

    def describe(self):
        return []

    def collect(self):
        if self.processes is None:
            return
        rows = self.processes()
        cpu = CounterMetricFamily("raftkv_process_cpu_seconds", "CPU time of each process of the node",
                                  labels=["role", "pid"])
        rss = GaugeMetricFamily("raftkv_process_resident_memory_bytes", "resident memory of each process "
                                "of the node", labels=["role", "pid"])
        for row in rows:
            labels = [row["role"], str(row["pid"])]
            cpu.add_metric(labels, row["cpu_seconds"])
            rss.add_metric(labels, row["rss_bytes"])
        yield cpu
        yield rss


class _RaftCollector:
    """Gauges read from the node at scrape time."""

    def __init__(self) -> None:
        self.node: NodeViews | None = None

    def describe(self):
        return []

    def collect(self):
        node = self.node
        if node is None:
            return
        st = node.status()
        role = st["state"]
        g = GaugeMetricFamily("raft_state", "1 for the role this node is in", labels=["state"])
        for r in ROLES:
            g.add_metric([r], 1.0 if r == role else 0.0)
        yield g
        for name, key, doc in (
                ("raft_term", "term", "current term"),
                ("raft_commit_index", "commit_index", "highest log index known committed"),
                ("raft_last_log_index", "last_log_index", "last index in the log"),
                ("raft_last_snapshot_index", "last_snapshot_index", "index of the latest snapshot"),
                ("raft_applied_index", "applied_index", "highest log index applied to the state machine"),
                ("raft_fsm_pending", "fsm_pending", "committed entries not applied yet"),
                ("raft_peers", "num_peers", "voters in the configuration besides this node")):
            yield GaugeMetricFamily(name, doc, value=float(st[key]))
        if role == "Leader":
            lc = GaugeMetricFamily("raft_leader_last_contact_seconds",
                                   "(leader) seconds since each follower last answered", labels=["peer"])
            lag = GaugeMetricFamily("raft_replication_lag_entries",
                                    "(leader) entries of the leader's log each follower does not hold yet",
                                    labels=["peer"])
            for row in node.peers():
                if row["id"] == st["id"]:
                    continue
                if row.get("last_contact") is not None:
                    lc.add_metric([row["id"]], row["last_contact"] / 1000.0)
                if row.get("lag_entries") is not None:
                    lag.add_metric([row["id"]], float(row["lag_entries"]))
            yield lc
            yield lag
        elif st["last_contact"] is not None:
            yield GaugeMetricFamily("raft_last_contact_seconds",
                                    "(follower) seconds since the leader was last heard",
                                    value=st["last_contact"] / 1000.0)


_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))


class _HttpRequestCollector:
    """``raftkv_http_requests_total`` and ``raftkv_http_request_duration_seconds``,
    counted in plain lists and exported at scrape time. A prometheus_client
    Counter and Histogram take a lock and walk the buckets in Python on every
    request: a few microseconds on a path that serves a read in tens of
    them. Only the event loop's thread counts, so no lock is needed."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = list(buckets)
        self.requests: dict[tuple[str, str, int], int] = {}
        # route -> [count per bucket (the last one +Inf, not cumulative), sum of seconds]
        self.durations: dict[str, list] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        per_route = self.durations.get(route)
        if per_route is None:
            per_route = self.durations[route] = [[0] * (len(self.bounds) + 1), 0.0]
        per_route[0][bisect_left(self.bounds, seconds)] += 1
        per_route[1] += seconds

    def describe(self):
        return []

    def collect(self):
        requests = CounterMetricFamily("raftkv_http_requests", "HTTP requests answered",
                                       labels=["route", "method", "status"])
        for (route, method, status), count in list(self.requests.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        durations = HistogramMetricFamily("raftkv_http_request_duration_seconds", "time to answer an HTTP request",
                                          labels=["route"])
        for route, (counts, total) in list(self.durations.items()):
            cumulative, running = [], 0
            for bound, count in zip([*map(floatToGoString, self.bounds), "+Inf"], counts):
                running += count
                cumulative.append((bound, running))
            durations.add_metric([route], cumulative, total)
        yield durations


class NodeMetrics:
    """The registry of one node and its counting instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        self._collector = _RaftCollector()
        reg.register(self._collector)
        self._processes = _ProcessCollector()
        reg.register(self._processes)
        ProcessCollector(registry=reg)   # process_resident_memory_bytes, cpu seconds, fds
        PlatformCollector(registry=reg)  # python_info
        self.commit_time = Histogram("raft_commit_time_seconds",
                                     "time from a proposal to its entry committed and applied (leader)",
                                     registry=reg, buckets=_LATENCY_BUCKETS)
        self.fsm_apply = Histogram("raft_fsm_apply_seconds",
                                   "time to apply one batch of committed entries to the state machine",
                                   registry=reg, buckets=_LATENCY_BUCKETS)
        self.append_rpc = Counter("raft_replication_append_entries_rpc",
                                  "AppendEntries RPCs sent to each peer (not heartbeats)", ["peer"], registry=reg)
        self.append_logs = Counter("raft_replication_append_entries_logs",
                                   "log entries sent to each peer in AppendEntries", ["peer"], registry=reg)
        self.heartbeat = Counter("raft_replication_heartbeat", "heartbeats sent to each peer", ["peer"],
                                 registry=reg)
        self.request_vote = Counter("raft_election_request_vote_rpc", "vote requests sent to each peer",
                                    ["peer", "kind"], registry=reg)
        self.role = {r: Counter(f"raft_state_{r.lower()}", f"transitions into the {r} role", registry=reg)
                     for r in ("Candidate", "Leader", "Follower")}
        self.snapshot_create = Counter("raft_snapshot_create", "snapshots taken by this node", registry=reg)
        self.snapshot_installed = Counter("raft_snapshot_installed",
                                          "snapshots received from a leader and installed", registry=reg)
        self._http = _HttpRequestCollector(_LATENCY_BUCKETS)
        reg.register(self._http)
        self._per_peer: dict[str, tuple] = {}
        self._last_role: str | None = "Follower"
        self._last_term: int | None = None

    def peer(self, peer_id: str) -> tuple:
        """(rpc, logs, heartbeat) children for one peer, created once."""
        children = self._per_peer.get(peer_id)
        if children is None:
            children = (self.append_rpc.labels(peer_id), self.append_logs.labels(peer_id),
                        self.heartbeat.labels(peer_id))
            self._per_peer[peer_id] = children
        return children

    def watch(self, node: NodeViews) -> None:
        """Read the gauges from ``node`` from now on."""
        self._collector.node = node

    def watch_processes(self, processes: Callable[[], list[dict]]) -> None:
        """Report the rows ``processes()`` returns (``raftkv.observability.procstat``) from now on."""
        self._processes.processes = processes

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        if method not in _METHODS:
            method = "other"  # a client's made-up method must not add series
        self._http.observe(route, method, status, seconds)

    def sent(self, to_id: str, message) -> None:
        """Count a message to a peer: AppendEntries RPCs, their entries,
        heartbeats, and vote requests (pre-votes apart)."""
        if type(message) is RequestVote:
            self.request_vote.labels(to_id, "pre-vote" if message.pre_vote else "vote").inc()
        elif type(message) is AppendEntries:
            rpc, logs, heartbeat = self.peer(to_id)
            if message.heartbeat:
                heartbeat.inc()
            else:
                rpc.inc()
                if message.entries:
                    logs.inc(len(message.entries))

    def role_changed(self, role: str, term: int) -> None:
        """Count a new role, or a new election round as candidate."""
        counter = self.role.get(role)
        if counter is not None and (role != self._last_role
                                    or (role == "Candidate" and term != self._last_term)):
            counter.inc()
        self._last_role, self._last_term = role, term

    def render(self) -> bytes:
        return generate_latest(self.registry)
