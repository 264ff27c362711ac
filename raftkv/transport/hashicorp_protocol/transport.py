"""TCP transport speaking hashicorp/raft 1.1.2's net_transport protocol.

Theory of operation
-------------------
The same :class:`~raftkv.transport.contract.Transport` as
:class:`~raftkv.transport.raftkv_protocol.tcp.TcpTransport` (``start``,
``send(to, address, message)``, ``learn_configuration``, ``disconnect``,
``close``, the snapshot source/sink callbacks, the ``log`` callable) and the
same :class:`~raftkv.transport.options.TransportOptions`, on a different wire:
the frames of :mod:`.codec`, where an answer travels back on the connection
that carried the request, in request order. It dials through the stream layer
(:mod:`raftkv.transport.stream`, without TLS) and reports failures with the
outbound channels' backoff, lines and rounds (:mod:`raftkv.transport.channel`)
and Go's error texts (:mod:`raftkv.transport.gotext`).

Outbound, this node's requests travel on two pipelined connections per peer
(:mod:`.pipeline`: ``append`` for AppendEntries with entries,
``rpc`` for the rest, as hashicorp's pipeline and pooled connections);
InstallSnapshot dials a connection of its own, writes the request and
exactly ``meta.size`` bytes from ``snapshot_source(meta)``, waits for the
answer and closes it. Inbound, the peers' requests are served one at a time
per connection and answered in order (:mod:`.inbound`); the core's
answers come back through ``send``.

Peers are named by address on this wire. The transport learns which id goes
with which address from the core's own ``send`` calls and from every
configuration it carries (configuration entries, snapshot metadata); an
address it cannot name yet is used as the id.

Pre-vote requests are never sent (1.1.2 has no such RPC and would close the
connection): a node using this transport must run with pre-vote off
(``RaftConfig.pre_vote``).

Fault injection (``options.faults``, as TcpTransport applies it): each
message sent is offered to the injector (direction ``out``) and each message
received (``in``), and may be dropped or held back. Held back, a request
keeps its place: the requests behind it on its connection wait with it. A
dropped request or answer is different on this wire, where answers come in
request order: its answer never comes and none behind it may overtake it,
so the connection that carried it goes quiet (:mod:`.inbound`)
and the sender, its answer overdue, redials. A snapshot dropped on the way
out is reported failed after 0.2s, as if its stream had failed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from raftkv.config.textforms import join_host_port
from raftkv.raft.configuration import Configuration
from raftkv.raft.messages import AppendEntries, EntryType, InstallSnapshot, RequestVote, SnapshotMeta

from ..channel import APPEND, backoff_delay
from ..codec import CodecError
from ..contract import NET_LOGGER, RAFT_LOGGER, Handler, LogFn, no_log
from ..gotext import dial_error_text
from ..options import TransportOptions
from ..stream import READ_SIZE, dial_address, open_stream
from . import codec as hc
from .inbound import HashicorpAcceptor
from .pipeline import RPC, Pipeline

__all__ = ["MAX_FRAME", "HashicorpTransport"]

_SNAPSHOT_CHUNK = 1024 * 1024
MAX_FRAME = 64 * 1024 * 1024     # the frame limit when the options leave it unset


class HashicorpTransport:
    """See the module docstring. The constructor takes TcpTransport's
    arguments; the options may not hold a cluster key or TLS contexts (the
    protocol has neither). Its parts (:mod:`.pipeline`,
    :mod:`.inbound`) use ``loop``, ``closed``, ``log``,
    ``describe``, ``backoff``, ``receive`` and ``deliver``."""

    def __init__(self, node_id: str, bind_host: str, bind_port: int, handler: Handler,
                 options: TransportOptions | None = None, *, log: LogFn | None = None,
                 describe_peer: Callable[[str], object] | None = None,
                 snapshot_source: Callable[[SnapshotMeta], Any] | None = None,
                 snapshot_sink: Callable[[str, SnapshotMeta], Any] | None = None,
                 on_snapshot_failed: Callable[[str], None] | None = None) -> None:
        options = (options or TransportOptions()).resolved(MAX_FRAME)
        if options.authenticate:
            raise NotImplementedError("hashicorp/raft's protocol has no cluster key handshake: "
                                      "RAFT_CLUSTER_KEY cannot be used with RAFT_PROTOCOL=hashicorp")
        if options.server_ssl is not None or options.client_ssl is not None:
            raise NotImplementedError("hashicorp/raft's net_transport has no TLS: "
                                      "RAFT_TLS_* cannot be used with RAFT_PROTOCOL=hashicorp")
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
        self._server: asyncio.Server | None = None
        self._bound: str | None = None
        self.closed = False
        self.closing = asyncio.Event()
        self._out: dict[tuple[str, str], Pipeline] = {}
        self.acceptor = HashicorpAcceptor(self)
        self._snapshot_sends: dict[str, asyncio.Task] = {}
        self._ids: dict[str, str] = {}          # address -> server id
        self._pre_vote_dropped = 0

    # --- lifecycle -------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.options.advertise or self._bound or join_host_port(self.bind_host, self.bind_port)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self.acceptor.serve, self.bind_host, self.bind_port, limit=READ_SIZE)
        self._bound = join_host_port(self.bind_host, self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.closing.set()
        if self._server is not None:
            self._server.close()
        inbound = self.acceptor.connections
        for writer in inbound.values():
            writer.transport.abort()
        for task in self._snapshot_sends.values():
            task.cancel()
        await asyncio.gather(*(o.close() for o in self._out.values()), return_exceptions=True)
        await asyncio.gather(*self._snapshot_sends.values(), return_exceptions=True)
        if inbound:
            await asyncio.wait(list(inbound), timeout=self.options.io_timeout)
        if self._server is not None:
            await self._server.wait_closed()
        self.log("DEBUG", NET_LOGGER, "stream layer is closed", [])

    async def disconnect(self, peer_id: str) -> None:
        task = self._snapshot_sends.pop(peer_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for kind in (APPEND, RPC):
            out = self._out.pop((peer_id, kind), None)
            if out is not None:
                await out.close()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (peer_id, kind), o in self._out.items():
            out.setdefault(peer_id, {})[kind] = {"queued": len(o.queue), "in_flight": len(o.pending),
                                                 "dropped": o.dropped, "sent": o.sent, "failures": o.failures}
        return out

    def dropped(self, peer_id: str | None = None) -> int:
        return sum(o.dropped for (p, _), o in self._out.items() if peer_id in (None, p))

    @property
    def refused_connections(self) -> int:
        return self.acceptor.over_limit.refused

    # --- names -------------------------------------------------------------------

    def learn(self, server_id: str, address: str) -> None:
        if server_id and address:
            self._ids[address] = server_id

    def learn_configuration(self, configuration: Configuration) -> None:
        for server in configuration.servers:
            self.learn(server.id, server.address)

    def id_of(self, address: str) -> str:
        return self._ids.get(address, address)

    def backoff(self, failures: int) -> float:
        """Seconds to wait before redialing after ``failures`` in a row."""
        return backoff_delay(failures, self.options.backoff_base, self.options.backoff_cap)

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

    # --- sending -----------------------------------------------------------------

    def send(self, to_id: str, address: str, message: object) -> None:
        if self.closed:
            return
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self.learn(to_id, address)
        faults = self.options.faults
        if faults is not None and faults.rules:
            drop, delay = faults.verdict(to_id, "out")
            if drop:
                self._drop(to_id, message)
                return
            if delay:
                self.loop.call_later(delay, self._send_now, to_id, address, message)
                return
        self._send_now(to_id, address, message)

    def _drop(self, to_id: str, message: object) -> None:
        """A fault rule dropped ``message``. An answer still settles the
        request it answers (the connection is then black-holed: the answers
        behind it may not overtake it); a snapshot is reported failed after
        0.2s, as if its stream had failed, and the core offers it again."""
        rpc_type = hc.response_type(message)
        if rpc_type is not None:
            self.acceptor.answer(to_id, rpc_type, message, vanish=True)
        elif type(message) is InstallSnapshot and self.on_snapshot_failed is not None:
            self.loop.call_later(0.2, self._snapshot_dropped, to_id)

    def _snapshot_dropped(self, to_id: str) -> None:
        if not self.closed and self.on_snapshot_failed is not None:
            self.on_snapshot_failed(to_id)

    def _send_now(self, to_id: str, address: str, message: object) -> None:
        if self.closed:
            return
        rpc_type = hc.response_type(message)
        if rpc_type is not None:
            self.acceptor.answer(to_id, rpc_type, message)
            return
        kind = type(message)
        if kind is RequestVote and message.pre_vote:
            self._pre_vote_dropped += 1
            if self._pre_vote_dropped == 1:
                self.log("WARN", NET_LOGGER, "not sending a pre-vote: hashicorp/raft 1.1.2 has no such RPC "
                         "(run with pre-vote off)", [("peer", to_id)])
            return
        if kind is InstallSnapshot:
            self._start_snapshot(to_id, address, message)
            return
        if kind is AppendEntries:
            self.learn_entries(message.entries)
        try:
            frame = hc.encode_request(message)
        except CodecError as e:
            self.log("ERROR", NET_LOGGER, "failed to encode outgoing command", [("peer", to_id), ("error", str(e))])
            return
        channel = APPEND if kind is AppendEntries and not message.heartbeat else RPC
        out = self._out.get((to_id, channel))
        if out is None:
            out = self._out[(to_id, channel)] = Pipeline(self, to_id, channel, address)
        out.enqueue(message, frame, address)

    # --- receiving ---------------------------------------------------------------

    def receive(self, from_id: str, message: object) -> None:
        """An answer to one of our requests arrived: to the core, unless a
        fault rule drops it or holds it back."""
        faults = self.options.faults
        if faults is not None and faults.rules:
            drop, delay = faults.verdict(from_id, "in")
            if drop:
                return
            if delay:
                self.loop.call_later(delay, self._deliver_late, from_id, message)
                return
        self.deliver(from_id, message)

    def _deliver_late(self, from_id: str, message: object) -> None:
        if not self.closed:
            self.deliver(from_id, message)

    def deliver(self, from_id: str, message: object) -> None:
        """Hand ``message`` to the core; a handler that raises is logged."""
        try:
            self.handler(from_id, message)
        except Exception as e:
            self.log("ERROR", NET_LOGGER, "failed to handle incoming command",
                     [("error", f"{type(e).__name__}: {e}")])

    def learn_entries(self, entries) -> None:
        """Learn the names in the configurations among ``entries``."""
        for entry in entries:
            if entry.type is EntryType.CONFIGURATION:
                try:
                    self.learn_configuration(Configuration.decode(entry.data))
                except Exception:
                    pass

    # --- snapshots out -------------------------------------------------------------

    def _start_snapshot(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        running = self._snapshot_sends.get(to_id)
        if running is not None and not running.done():
            return
        self._snapshot_sends[to_id] = self.loop.create_task(self._send_snapshot(to_id, address, message),
                                                            name=f"raftkv-hc-snapshot-{to_id}")

    async def _send_snapshot(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        writer = None
        source = None
        loop = self.loop
        try:
            if self.snapshot_source is None:
                raise RuntimeError("no snapshot source configured")
            dial_address(address)  # a bad address fails in its own words, without "dial tcp"
            try:
                reader, writer = await open_stream(address, self.options.dial_timeout)
            except Exception as e:
                raise RuntimeError(dial_error_text(address, e)) from None
            source = self.snapshot_source(message.meta)
            writer.write(hc.encode_request(message))
            remaining = message.meta.size
            while remaining > 0:
                chunk = await loop.run_in_executor(None, source.read, min(remaining, _SNAPSHOT_CHUNK))
                if not chunk:
                    raise RuntimeError(f"snapshot source ended {remaining} bytes short of its size")
                remaining -= len(chunk)
                writer.write(chunk)
                async with asyncio.timeout(self.options.io_timeout):
                    await writer.drain()
            decoder = hc.StreamDecoder(self.options.max_frame)
            async with asyncio.timeout(max(self.options.io_timeout, 60.0)):
                while (item := decoder.next_response()) is None:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        raise RuntimeError("EOF")
                    decoder.push(data)
            self.receive(to_id, hc.decode_response(message, *item))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log("ERROR", RAFT_LOGGER, "failed to send snapshot to",
                     [("peer", self.describe(to_id)), ("error", f"{e}")])
            if self.on_snapshot_failed is not None:
                self.on_snapshot_failed(to_id)
        finally:
            if writer is not None:
                writer.transport.abort()
            if source is not None:
                try:
                    source.close()
                except Exception:
                    pass
            if self._snapshot_sends.get(to_id) is asyncio.current_task():
                del self._snapshot_sends[to_id]
