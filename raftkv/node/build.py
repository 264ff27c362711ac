"""Choosing what a node is made of, from its settings.

Theory of operation: hashicorp/raft's ``NewRaft(conf, fsm, logs, stable,
snaps, trans)`` is handed its parts; so is :class:`~raftkv.node.runtime.Node`.
:func:`choose_parts` reads the settings once and picks the state machine
(raftkv's own, or hraftd's format for a node in a Go cluster), the transport
(raftkv's protocol or hashicorp's) with its options, and the fault injector
when fault injection is on. The runtime then only drives the parts it was
given: nothing in it asks which protocol or format it speaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.config.settings import LEADER_CAPS_BATCH_BYTES, NodeSettings
from raftkv.config.tls import TlsContexts
from raftkv.observability import hclog
from raftkv.statemachine.hraftd import HraftdKVStore
from raftkv.statemachine.kvstore import KVStore
from raftkv.transport.faults import FaultInjector
from raftkv.transport.hashicorp_protocol.transport import HashicorpTransport
from raftkv.transport.options import TransportOptions
from raftkv.transport.raftkv_protocol.tcp import TcpTransport

__all__ = ["Parts", "choose_parts"]

net_log = hclog.get_logger("raft.net")


@dataclass(frozen=True)
class Parts:
    store_class: type[KVStore]          # the state machine's format
    transport_class: type[TcpTransport] | type[HashicorpTransport]
    transport_options: TransportOptions
    faults: FaultInjector | None        # RAFT_FAULT_INJECTION: /debug/faults drops or delays traffic


def choose_parts(settings: NodeSettings, tls: TlsContexts | None = None) -> Parts:
    s = settings
    faults = None
    if s.fault_injection:
        faults = FaultInjector(log=net_log.log_fields)
        net_log.warn("fault injection is enabled: /debug/faults can drop or delay traffic")
    options = TransportOptions(
        advertise=s.raft_address(),
        max_frame=_max_frame(s),
        max_connections=s.max_connections,
        idle_timeout=s.conn_idle_timeout / 1000,
        stranger_snapshot_after=s.heartbeat_timeout / 1000,
        faults=faults,
        authenticate=s.raft_port_key or None,
        server_ssl=tls.raft_server if tls is not None else None,
        client_ssl=tls.raft_client if tls is not None else None,
    )
    return Parts(store_class=HraftdKVStore if s.fsm == "hraftd" else KVStore,
                 transport_class=HashicorpTransport if s.protocol == "hashicorp" else TcpTransport,
                 transport_options=options, faults=faults)


def _max_frame(s: NodeSettings) -> int:
    # RAFT_MAX_FRAME, which our leaders' batches stop short of. A leader that
    # caps a batch by entry count only -- a Go node on hashicorp's protocol,
    # or a core without max_append_bytes -- sends MaxAppendEntries values at
    # the size limit in one frame: refusing it would stall replication.
    if s.protocol == "hashicorp" or not LEADER_CAPS_BATCH_BYTES:
        return max(s.max_frame, s.max_append_entries * s.max_entry_bytes() + 1024 * 1024)
    return s.max_frame
