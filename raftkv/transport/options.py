"""A transport's settings, one dataclass for both TCP transports.

Theory of operation
-------------------
hashicorp/raft builds a ``NetworkTransport`` from a ``NetworkTransportConfig``;
raftkv builds :class:`~raftkv.transport.raftkv_protocol.tcp.TcpTransport` and
:class:`~raftkv.transport.hashicorp_protocol.transport.HashicorpTransport` from a
:class:`TransportOptions`: what the node's settings decide (the runtime fills
it from ``NodeSettings``) and what the tests tune (short timeouts, small
limits). The constructor then takes only who the node is, where it listens,
the handler and the callbacks of :mod:`.contract`.

Every field has the default a node would run with. Two depend on the
protocol and are left ``None`` here: ``max_frame`` (8 MiB for raftkv's
frames, ``RAFT_MAX_FRAME``'s default; 64 MiB for hashicorp's, whose Go
leaders cap batches by count only) and ``max_held`` (four frames); a
transport fills them in with :meth:`TransportOptions.resolved`, and its
``options`` attribute holds the result.

The hashicorp transport reads the fields its wire has a use for (marked
*both* below) and refuses a cluster key or TLS contexts, which its protocol
cannot carry: a cluster that believes it is protected must not run open.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from .codec import SNAPSHOT_CHUNK_SIZE
from .faults import FaultInjector

__all__ = ["TransportOptions"]

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class TransportOptions:
    """A transport's settings; see the module docstring."""

    #: both: the "host:port" peers dial, if not the address bound
    advertise: str | None = None
    #: both: the largest frame read or written (None: the protocol's default)
    max_frame: int | None = None
    #: raftkv: bytes of incomplete large frames all connections may hold (None: 4 frames)
    max_held: int | None = None
    #: both: accepted connections at once; beyond it a new one is closed at once
    max_connections: int = 256
    #: both: messages queued per outbound connection before the oldest are dropped
    max_queue_frames: int = 1024
    #: raftkv: bytes queued per outbound channel before the oldest frames are dropped
    max_queue_bytes: int = 64 * MiB
    #: raftkv: snapshot bytes per SnapshotChunk frame
    snapshot_chunk_size: int = SNAPSHOT_CHUNK_SIZE
    #: both: seconds to connect (and, with a cluster key, to be admitted)
    dial_timeout: float = 5.0
    #: both: seconds for a write to drain, a begun frame to complete, an answer to come
    io_timeout: float = 10.0
    #: raftkv: seconds a snapshot's sender waits for the receiver's verdict
    snapshot_ack_timeout: float = 120.0
    #: raftkv: seconds an accepted connection with nothing pending may stay silent
    idle_timeout: float = 60.0
    #: raftkv: seconds without a member's message after which a stranger's snapshot is taken
    stranger_snapshot_after: float = 1.0
    #: both: the first redial delays after a failure (10ms, 10ms, 10ms, 20ms ...)
    backoff_base: float = 0.010
    #: both: the longest redial delay
    backoff_cap: float = 0.5
    #: both: at most one line per this many seconds for a repeated failure
    log_interval: float = 5.0
    #: raftkv: the cluster key (bytes or str) or a ClusterKeyAuth; None runs open
    authenticate: Any = None
    #: raftkv: mutual TLS on the Raft port (raftkv.config.tls)
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    #: both: network fault injection (--enable-fault-injection)
    faults: FaultInjector | None = None

    def resolved(self, default_max_frame: int) -> TransportOptions:
        """These options with ``max_frame`` (``default_max_frame`` if unset)
        and ``max_held`` (four frames if unset) filled in."""
        max_frame = default_max_frame if self.max_frame is None else self.max_frame
        # One leader's batch and a snapshot chunk are what members send at
        # once; room for a few of each.
        max_held = 4 * max_frame if self.max_held is None else self.max_held
        return dataclasses.replace(self, max_frame=max_frame, max_held=max_held)
