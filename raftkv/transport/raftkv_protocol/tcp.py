"""TCP transport: raftkv's own protocol, Raft messages over asyncio streams.

Theory of operation
-------------------
Every node dials every peer for its *own* outbound messages and never writes
replies on a connection it accepted: a reply is just another ``send`` to the
address the core names in its ``Send`` effect, so it travels over this node's
own dial. A connection therefore has a direction, and its first frame is a
``Hello`` naming the caller; the acceptor attributes everything that follows
to that node id and hands each message to ``handler(from_id, message)``
synchronously, in arrival order.

The transport is layered as hashicorp/raft's is (its ``transport.go``,
``net_transport.go`` and ``tcp_transport.go``), one concern per module.
Shared with the hashicorp transport, in :mod:`raftkv.transport`:

* ``contract`` -- what the runtime calls
  (:class:`~raftkv.transport.contract.Transport`);
* ``stream`` -- the stream layer: dialing, the listener, TLS;
* ``channel`` -- outbound: two channels per peer, their queues,
  backoff and failure lines;
* ``gotext`` -- Go's error texts and the shared WARN lines;
* ``codec`` -- the frames;

raftkv's protocol alone, beside this module:

* :mod:`.handshake` -- admission: the Hello and the cluster key challenge;
* :mod:`.inbound` -- accepted connections: the read loop, its deadlines
  and the limits on what a connection may hold;
* :mod:`.snapshots` -- snapshot streams, both ends.

:class:`TcpTransport` wires them together. ``send`` is synchronous: it
encodes the message (a frame over ``max_frame`` is refused: ``failed to
encode outgoing command``) and queues it on the peer's channel for its kind
of traffic, except an ``InstallSnapshot``, which starts a snapshot stream.
Loss is normal: Raft retries.

Fault injection (tests and chaos runs only): with a :class:`FaultInjector`
(``faults=``) holding rules, each message sent is first offered to it
(direction ``out``) and may be dropped or held back with ``call_later``; a
dropped ``InstallSnapshot`` is reported failed after 0.2s, as if its stream
had failed. Messages received are offered to it too (:mod:`.inbound`); see
:mod:`raftkv.transport.faults`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from raftkv.config.textforms import join_host_port
from raftkv.raft.messages import InstallSnapshot, SnapshotMeta

from ..channel import APPEND, HEARTBEAT, Channel, channel_for
from ..codec import DEFAULT_MAX_FRAME, CodecError, encode
from ..contract import NET_LOGGER, Handler, LogFn, SnapshotSource, SnapshotWriter, no_log
from ..options import TransportOptions
from ..stream import READ_SIZE, TlsListener, open_stream, tune
from .auth import ClusterKeyAuth
from .handshake import handshake_out
from .inbound import Acceptor
from .snapshots import SnapshotStreams

__all__ = ["TcpTransport"]


class TcpTransport:
    """See the module docstring.

    Callbacks run on the event loop thread, except the blocking file calls:
    ``read`` of the object ``snapshot_source(meta)`` returns and ``write`` /
    ``close`` of the writer ``snapshot_sink(from_id, meta)`` returns run in a
    worker thread, one call at a time per snapshot. A nonzero ``meta.size``
    must equal the number of bytes the source yields: the receiver rejects a
    stream of any other length (``failed to receive whole snapshot``).

    Its parts (:mod:`raftkv.transport.channel`, :mod:`.inbound`,
    :mod:`.snapshots`) read its settings and use ``loop``, ``log``, ``describe`` and ``dial``."""

    def __init__(
        self,
        node_id: str,
        bind_host: str,
        bind_port: int,
        handler: Handler,
        options: TransportOptions | None = None,
        *,
        log: LogFn | None = None,
        describe_peer: Callable[[str], object] | None = None,
        snapshot_source: Callable[[SnapshotMeta], SnapshotSource] | None = None,
        snapshot_sink: Callable[[str, SnapshotMeta], SnapshotWriter] | None = None,
        on_snapshot_failed: Callable[[str], None] | None = None,
    ) -> None:
        options = (options or TransportOptions()).resolved(DEFAULT_MAX_FRAME)
        authenticate = options.authenticate
        if isinstance(authenticate, (bytes, str)):
            authenticate = ClusterKeyAuth(authenticate)
        if authenticate is not None and not isinstance(authenticate, ClusterKeyAuth):
            # Refuse rather than ignore: a cluster that believes it is
            # protected by a key must not silently run open.
            raise NotImplementedError(f"no authentication of kind {type(authenticate).__name__}: "
                                      "pass the cluster key (bytes/str) or a ClusterKeyAuth")
        self.auth: ClusterKeyAuth | None = authenticate
        if options.snapshot_chunk_size + 64 > options.max_frame:
            raise ValueError("snapshot_chunk_size must leave room within max_frame")
        self.options = options
        self.node_id = node_id
        self.bind_host = bind_host
        self.bind_port = bind_port
        self.handler = handler
        self._log: LogFn = log or no_log
        self.describe_peer = describe_peer
        self.snapshot_source = snapshot_source
        self.snapshot_sink = snapshot_sink
        self.on_snapshot_failed = on_snapshot_failed

        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | TlsListener | None = None
        self._bound: str | None = None
        self.closed = False
        self._channels: dict[tuple[str, str], Channel] = {}
        self.acceptor = Acceptor(self)
        self.snapshots = SnapshotStreams(self)
        self._dropped_closed = 0

    # --- lifecycle ---------------------------------------------------------

    @property
    def address(self) -> str:
        """The "host:port" peers should dial: the advertised address if set,
        else the one actually bound (meaningful after ``start()``)."""
        if self.options.advertise:
            return self.options.advertise
        return self._bound or join_host_port(self.bind_host, self.bind_port)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        o = self.options
        if o.server_ssl is None:
            self._server = await asyncio.start_server(self.acceptor.serve, self.bind_host, self.bind_port,
                                                      limit=READ_SIZE)
        else:
            self._server = TlsListener(self.loop, o.server_ssl, o.io_timeout, o.max_connections,
                                       self.acceptor.serve, self.acceptor.refuse_over_limit, self.log)
            self._server.listen(self.bind_host, self.bind_port)
        sockname = self._server.sockets[0].getsockname()
        self._bound = join_host_port(self.bind_host, sockname[1])

    async def close(self) -> None:
        """Stop listening and close every connection; pending snapshot
        streams are abandoned (their sinks cancelled). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._server is not None:
            self._server.close()  # a TlsListener also cancels its handshakes
        sends = self.snapshots.cancel_all()
        inbound = self.acceptor.abort_all()
        await asyncio.gather(*(ch.close() for ch in self._channels.values()), return_exceptions=True)
        await asyncio.gather(*sends, return_exceptions=True)
        if inbound:
            _, stuck = await asyncio.wait(inbound, timeout=self.options.io_timeout)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        self.snapshots.shutdown()
        self.log("DEBUG", NET_LOGGER, "stream layer is closed", [])

    # --- sending -----------------------------------------------------------

    def send(self, to_id: str, address: str, message: object) -> None:
        """Queue ``message`` for ``to_id`` at ``address``; never blocks and
        never raises for network trouble (delivery is best effort)."""
        if self.closed:
            self._dropped_closed += 1
            return
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        faults = self.options.faults
        if faults is not None and faults.rules:
            drop, delay = faults.verdict(to_id, "out")
            if drop:
                if type(message) is InstallSnapshot and self.on_snapshot_failed is not None:
                    # as if the stream had failed; the core offers it again
                    self.loop.call_later(0.2, self._snapshot_dropped, to_id)
                return
            if delay:
                self.loop.call_later(delay, self._send_now, to_id, address, message)
                return
        self._send_now(to_id, address, message)

    def _snapshot_dropped(self, to_id: str) -> None:
        if not self.closed and self.on_snapshot_failed is not None:
            self.on_snapshot_failed(to_id)

    def _send_now(self, to_id: str, address: str, message: object) -> None:
        if self.closed:
            self._dropped_closed += 1
            return
        if type(message) is InstallSnapshot:
            self.snapshots.send(to_id, address, message)
            return
        try:
            frame = encode(message)
            if len(frame) - 4 > self.options.max_frame:
                raise CodecError(f"frame of {len(frame) - 4} bytes exceeds the limit of {self.options.max_frame}")
        except CodecError as e:
            self.log("ERROR", NET_LOGGER, "failed to encode outgoing command",
                     [("peer", to_id), ("error", str(e))])
            return
        kind = channel_for(message)
        channel = self._channels.get((to_id, kind))
        if channel is None:
            channel = self._channels[(to_id, kind)] = Channel(self, to_id, kind, address)
        if kind is HEARTBEAT:
            channel.last = message  # small messages only: never a batch of entries
        channel.enqueue(frame, address)

    def learn_configuration(self, configuration) -> None:
        """The members, whose snapshot streams are taken (every raftkv frame
        names its sender's id, so there are no addresses to learn)."""
        self.acceptor.learn_configuration(configuration)

    async def disconnect(self, peer_id: str) -> None:
        """Forget a peer (e.g. removed from the configuration): close its
        channels, drop what is queued for it and abandon a snapshot stream."""
        await self.snapshots.cancel(peer_id)
        for kind in (APPEND, HEARTBEAT):
            channel = self._channels.pop((peer_id, kind), None)
            if channel is not None:
                await channel.close()

    def stats(self) -> dict[str, Any]:
        """Per-peer, per-channel counters (queued, dropped, sent, failures)."""
        out: dict[str, Any] = {}
        for (peer_id, kind), channel in self._channels.items():
            out.setdefault(peer_id, {})[kind] = channel.stats()
        return out

    def dropped(self, peer_id: str | None = None) -> int:
        """Frames dropped from full queues (for one peer, or all)."""
        return sum(ch.dropped for (p, _), ch in self._channels.items() if peer_id in (None, p))

    @property
    def refused_connections(self) -> int:
        """Connections closed at once for being over ``max_connections``."""
        return self.acceptor.over_limit.refused

    # --- for the parts -----------------------------------------------------

    def log(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None:
        self._log(level, logger, message, fields)

    def describe(self, peer_id: str) -> object:
        """A peer as hashicorp prints it in a line (``describe_peer``)."""
        if self.describe_peer is not None:
            try:
                return self.describe_peer(peer_id)
            except Exception:
                pass
        return peer_id

    async def dial(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to ``address``, admitted by the peer (Hello, and the
        cluster key challenge), ready for frames."""
        o = self.options
        reader, writer = await open_stream(address, o.dial_timeout, o.client_ssl)
        try:
            tune(writer)
            await handshake_out(reader, writer, self.node_id, self.address, self.auth, o.dial_timeout)
        except BaseException:
            writer.transport.abort()
            raise
        return reader, writer
