"""TCP transport speaking hashicorp/raft 1.1.2's net_transport protocol.

Theory of operation
-------------------
The same :class:`~raftkv.transport.contract.Transport` as
:class:`~raftkv.transport.tcp.TcpTransport` (``start``, ``send(to, address,
message)``, ``learn_configuration``, ``disconnect``, ``close``, the snapshot
source/sink callbacks, the ``log`` callable) and the same
:class:`~raftkv.transport.options.TransportOptions`, on a different wire:
the frames of :mod:`.hashicorp_codec`, where an answer travels back on the
connection that carried the request, in request order. It dials through the
stream layer (:mod:`.stream`, without TLS) and reports failures with the
outbound channels' backoff, lines and rounds (:mod:`.channel`) and Go's
error texts (:mod:`.gotext`).

Outbound (this node's requests). Per peer there are two long-lived
connections, as hashicorp keeps: ``append`` carries AppendEntries with
entries (its pipeline connection), ``rpc`` carries heartbeats, vote requests
and TimeoutNow (its pooled connection). Each is pipelined: requests are
written as they come and remembered in order; a reader matches each answer
to the oldest one and hands the core the response, completed from the
request (``decode_response``). An answer that does not come within
``io_timeout`` closes the connection (hashicorp sets the same deadline); what
was in flight is lost and Raft retries. InstallSnapshot dials a connection
of its own, writes the request and exactly ``meta.size`` bytes from
``snapshot_source(meta)``, waits for the answer and closes it.

Inbound (the peer's requests). Like hashicorp's ``handleConn``, a connection
is served one request at a time: decode, hand the message to the core
(``handler(from_id, message)``), wait for the core's response, write it, read
the next. The core answers through ``send(to, address, response)``; the
response goes to the oldest request of ``to`` still waiting for that kind of
answer (an AppendEntries answer must also echo the request's previous index,
or its heartbeat flag). A request the core leaves unanswered for
``io_timeout`` closes its connection. TimeoutNow is answered at once (the
core has no response for it). An InstallSnapshot's bytes are streamed into
``snapshot_sink(from_id, meta)`` before the core hears of it.

Peers are named by address on this wire. The transport learns which id goes
with which address from the core's own ``send`` calls and from every
configuration it carries (configuration entries, snapshot metadata); an
address it cannot name yet is used as the id.

A frame that does not decode, or breaks the decoder's limits (the frame
limit on buffered bytes, per-value caps of hashicorp_codec.StreamDecoder), is
logged as ``failed to decode incoming command`` and closes that connection
only. Beyond ``max_connections`` accepted connections a new one is closed at
once, as in transport/inbound.py. Inbound reads have no idle deadline here: Go
peers keep pooled connections open and would log an error for each one
closed under them. Pre-vote requests are never sent
(1.1.2 has no such RPC and would close the connection): a node using this
transport must run with pre-vote off (``RaftConfig.pre_vote``).

Fault injection (``options.faults``, as TcpTransport applies it): each
message sent is offered to the injector (direction ``out``) and each message
received (``in``), and may be dropped or held back. Held back, a request
keeps its place: the requests behind it on its connection wait with it. A
dropped request or answer is different on this wire, where answers come in
request order: its answer never comes and none behind it may overtake it,
so the connection that carried it goes quiet, its bytes read and discarded
for ``io_timeout`` as a black-holing firewall would, and is then closed; the
sender gives up on the overdue answer and redials. A dropped snapshot
stream is refused by closing its connection; a snapshot dropped on the way
out is reported failed after 0.2s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from typing import Any, Callable

from raftkv.raft.configuration import Configuration
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    InstallSnapshot,
    RequestVote,
    SnapshotMeta,
)
from raftkv.textforms import join_host_port

from . import hashicorp_codec as hc
from .channel import APPEND, HEARTBEAT, FailureLogRounds, backoff_delay, failure_report
from .codec import CodecError
from .contract import NET_LOGGER, RAFT_LOGGER, Handler, LogFn, no_log
from .gotext import OVER_LIMIT_MESSAGE, OverLimitLines, dial_error_text, io_error_text, over_limit_fields
from .options import TransportOptions
from .stream import READ_SIZE, dial_address, open_stream, sockaddr

__all__ = ["MAX_FRAME", "HashicorpTransport"]

RPC = "rpc"
_SNAPSHOT_CHUNK = 1024 * 1024
MAX_FRAME = 64 * 1024 * 1024     # the frame limit when the options leave it unset
_VANISHED = object()             # the answer to a request whose answer a fault rule dropped


class _Outbound:
    """One pipelined connection to one peer for one kind of request."""

    def __init__(self, t: "HashicorpTransport", peer_id: str, kind: str, address: str) -> None:
        self.t = t
        self.peer_id = peer_id
        self.kind = kind
        self.address = address
        self.queue: deque[tuple[object, bytes]] = deque()
        self.pending: deque[tuple[object, float]] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.failures = 0
        self.last: object = None
        self.rounds = FailureLogRounds(t.options.log_interval)
        self.dropped = 0
        self.sent = 0

    def enqueue(self, message: object, frame: bytes, address: str) -> None:
        self.address = address
        if len(self.queue) >= self.t.options.max_queue_frames:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append((message, frame))
        self.last = message
        self.wakeup.set()
        if self.task is None or self.task.done():
            self.task = self.t._loop.create_task(self._run(), name=f"raftkv-hc-{self.kind}-{self.peer_id}")

    async def _run(self) -> None:
        t = self.t
        while not t._closed:
            await self.wakeup.wait()
            if not self.queue:
                self.wakeup.clear()
                continue
            address = self.address
            try:
                reader, writer = await open_stream(address, t.options.dial_timeout)
            except Exception as e:
                self._failed(dial_error_text(address, e))
                self.queue.clear()
                await asyncio.sleep(t.backoff(self.failures))
                continue
            error = await self._serve_connection(reader, writer, address)
            writer.transport.abort()
            lost = bool(self.pending)
            self.pending.clear()
            if error is not None and (lost or self.queue):
                self._failed(error)
                await asyncio.sleep(t.backoff(self.failures))

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                address: str) -> str | None:
        answers = asyncio.ensure_future(self._read_answers(reader, writer))
        try:
            while not answers.done() and address == self.address and not self.t._closed:
                if self.queue:
                    batch, self.queue = self.queue, deque()
                    now = time.monotonic()
                    writer.write(b"".join(frame for _, frame in batch))
                    self.pending.extend((message, now) for message, _ in batch)
                    self.sent += len(batch)
                    async with asyncio.timeout(self.t.options.io_timeout):
                        await writer.drain()
                self.wakeup.clear()
                waiter = asyncio.ensure_future(self.wakeup.wait())
                await asyncio.wait([waiter, answers], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        except (OSError, TimeoutError) as e:
            answers.cancel()
            return io_error_text("write", sockaddr(writer.get_extra_info("sockname")), address, e)
        if not answers.done():
            answers.cancel()
            return None
        if answers.cancelled():
            return None
        return answers.result()

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        t = self.t
        decoder = hc.StreamDecoder(t.options.max_frame)
        local = sockaddr(writer.get_extra_info("sockname"))
        remote = sockaddr(writer.get_extra_info("peername"))
        while True:
            try:
                if self.pending:
                    wait = max(0.0, self.pending[0][1] + t.options.io_timeout - time.monotonic())
                    async with asyncio.timeout(wait):
                        data = await reader.read(READ_SIZE)
                else:
                    data = await reader.read(READ_SIZE)
            except (OSError, TimeoutError) as e:
                return io_error_text("read", local, remote, e)
            if not data:
                return "EOF"
            try:
                decoder.push(data)
                while (item := decoder.next_response()) is not None:
                    if not self.pending:
                        raise CodecError("an answer to no request")
                    request, _ = self.pending.popleft()
                    try:
                        response = hc.decode_response(request, *item)
                    except hc.RemoteError as e:
                        t._log("ERROR", NET_LOGGER, "peer answered with an error",
                               [("peer", self.peer_id), ("error", str(e))])
                        continue
                    self.failures = 0
                    self.rounds.reset()
                    if response is not None:
                        t._receive(self.peer_id, response)
            except CodecError as e:
                t._log("ERROR", NET_LOGGER, "failed to decode response", [("peer", self.peer_id), ("error", str(e))])
                return str(e)

    def _failed(self, error: str) -> None:
        self.failures += 1
        backoff = self.t.backoff(self.failures)
        kind = APPEND if self.kind == APPEND else HEARTBEAT
        report = failure_report(kind, self.last, self.peer_id, self.address,
                                self.t._describe(self.peer_id), backoff, error)
        if report is not None and self.rounds.admit(report[1], time.monotonic()):
            level, message, fields = report
            self.t._log(level, RAFT_LOGGER, message, fields)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


@dataclasses.dataclass
class _Awaiting:
    """An inbound request waiting for the core's answer."""
    rpc_type: int
    request: object
    answer: asyncio.Future


class HashicorpTransport:
    """See the module docstring. The constructor takes TcpTransport's
    arguments; the options may not hold a cluster key or TLS contexts (the
    protocol has neither)."""

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
        self._over_limit = OverLimitLines(options.log_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._bound: str | None = None
        self._closed = False
        self._closing = asyncio.Event()
        self._out: dict[tuple[str, str], _Outbound] = {}
        self._awaiting: dict[str, list[_Awaiting]] = {}
        self._inbound: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._snapshot_sends: dict[str, asyncio.Task] = {}
        self._ids: dict[str, str] = {}          # address -> server id
        self._terms: dict[str, int] = {}        # address -> last term heard from it as leader
        self._last_leader = ""
        self._pre_vote_dropped = 0

    # --- lifecycle -------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.options.advertise or self._bound or join_host_port(self.bind_host, self.bind_port)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, self.bind_host, self.bind_port, limit=READ_SIZE)
        self._bound = join_host_port(self.bind_host, self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for writer in self._inbound.values():
            writer.transport.abort()
        for task in self._snapshot_sends.values():
            task.cancel()
        await asyncio.gather(*(o.close() for o in self._out.values()), return_exceptions=True)
        await asyncio.gather(*self._snapshot_sends.values(), return_exceptions=True)
        if self._inbound:
            await asyncio.wait(list(self._inbound), timeout=self.options.io_timeout)
        if self._server is not None:
            await self._server.wait_closed()
        self._log("DEBUG", NET_LOGGER, "stream layer is closed", [])

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
        return self._over_limit.refused

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

    def _describe(self, peer_id: str) -> object:
        if self.describe_peer is not None:
            try:
                return self.describe_peer(peer_id)
            except Exception:
                pass
        return peer_id

    # --- sending -----------------------------------------------------------------

    def send(self, to_id: str, address: str, message: object) -> None:
        if self._closed:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.learn(to_id, address)
        faults = self.options.faults
        if faults is not None and faults.rules:
            drop, delay = faults.verdict(to_id, "out")
            if drop:
                self._drop(to_id, message)
                return
            if delay:
                self._loop.call_later(delay, self._send_now, to_id, address, message)
                return
        self._send_now(to_id, address, message)

    def _drop(self, to_id: str, message: object) -> None:
        """A fault rule dropped ``message``. An answer still settles the
        request it answers (the connection is then black-holed: the answers
        behind it may not overtake it); a snapshot is reported failed after
        0.2s, as if its stream had failed, and the core offers it again."""
        rpc_type = hc.response_type(message)
        if rpc_type is not None:
            self._answer(to_id, rpc_type, message, vanish=True)
        elif type(message) is InstallSnapshot and self.on_snapshot_failed is not None:
            self._loop.call_later(0.2, self._snapshot_dropped, to_id)

    def _snapshot_dropped(self, to_id: str) -> None:
        if not self._closed and self.on_snapshot_failed is not None:
            self.on_snapshot_failed(to_id)

    def _send_now(self, to_id: str, address: str, message: object) -> None:
        if self._closed:
            return
        rpc_type = hc.response_type(message)
        if rpc_type is not None:
            self._answer(to_id, rpc_type, message)
            return
        kind = type(message)
        if kind is RequestVote and message.pre_vote:
            self._pre_vote_dropped += 1
            if self._pre_vote_dropped == 1:
                self._log("WARN", NET_LOGGER, "not sending a pre-vote: hashicorp/raft 1.1.2 has no such RPC "
                          "(run with pre-vote off)", [("peer", to_id)])
            return
        if kind is InstallSnapshot:
            self._start_snapshot(to_id, address, message)
            return
        if kind is AppendEntries:
            self._learn_entries(message.entries)
        try:
            frame = hc.encode_request(message)
        except CodecError as e:
            self._log("ERROR", NET_LOGGER, "failed to encode outgoing command", [("peer", to_id), ("error", str(e))])
            return
        channel = APPEND if kind is AppendEntries and not message.heartbeat else RPC
        out = self._out.get((to_id, channel))
        if out is None:
            out = self._out[(to_id, channel)] = _Outbound(self, to_id, channel, address)
        out.enqueue(message, frame, address)

    def _receive(self, from_id: str, message: object) -> None:
        """An answer to one of our requests arrived: to the core, unless a
        fault rule drops it or holds it back."""
        faults = self.options.faults
        if faults is not None and faults.rules:
            drop, delay = faults.verdict(from_id, "in")
            if drop:
                return
            if delay:
                self._loop.call_later(delay, self._deliver_late, from_id, message)
                return
        self._deliver(from_id, message)

    def _deliver_late(self, from_id: str, message: object) -> None:
        if not self._closed:
            self._deliver(from_id, message)

    def _deliver(self, from_id: str, message: object) -> None:
        try:
            self.handler(from_id, message)
        except Exception as e:
            self._log("ERROR", NET_LOGGER, "failed to handle incoming command",
                      [("error", f"{type(e).__name__}: {e}")])

    def _answer(self, to_id: str, rpc_type: int, response: object, vanish: bool = False) -> None:
        """The core's answer to a request of ``to_id``: wake the connection
        that waits for it (with ``vanish``, to write nothing more)."""
        waiting = self._awaiting.get(to_id)
        if not waiting:
            return
        for i, slot in enumerate(waiting):
            if slot.rpc_type != rpc_type or slot.answer.done():
                continue
            if rpc_type == hc.RPC_APPEND_ENTRIES and not _answers(slot.request, response):
                continue
            del waiting[i]
            slot.answer.set_result(_VANISHED if vanish else response)
            return

    def _learn_entries(self, entries) -> None:
        for entry in entries:
            if entry.type is EntryType.CONFIGURATION:
                try:
                    self.learn_configuration(Configuration.decode(entry.data))
                except Exception:
                    pass

    # --- serving -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closed:
            writer.transport.abort()
            return
        remote = sockaddr(writer.get_extra_info("peername"))
        if len(self._inbound) >= self.options.max_connections:
            writer.transport.abort()
            refused = self._over_limit.refuse(self._loop.time())
            if refused is not None:
                self._log("WARN", NET_LOGGER, OVER_LIMIT_MESSAGE,
                          over_limit_fields(self.options.max_connections, remote, refused))
            return
        self._inbound[task] = writer
        self._log("DEBUG", NET_LOGGER, "accepted connection",
                  [("local-address", sockaddr(writer.get_extra_info("sockname"))), ("remote-address", remote)])
        decoder = hc.StreamDecoder(self.options.max_frame)
        conn: dict = {}
        try:
            while True:
                item = decoder.next_request()
                if item is None:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        return
                    decoder.push(data)
                    continue
                rpc_type, obj = item
                if not await self._handle(rpc_type, obj, decoder, reader, writer, conn):
                    return
        except CodecError as e:
            self._log("ERROR", NET_LOGGER, "failed to decode incoming command", [("error", str(e))])
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._inbound.pop(task, None)
            writer.transport.abort() if self._closed else writer.close()

    async def _handle(self, rpc_type: int, obj: Any, decoder: hc.StreamDecoder,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: dict) -> bool:
        """Serve one request; False closes the connection. ``conn`` remembers
        the leader last heard on this connection: TimeoutNow names nobody."""
        leader = obj.get(b"Leader") if type(obj) is dict else None
        leader_address = leader.decode(errors="replace") if type(leader) is bytes else ""
        if rpc_type == hc.RPC_TIMEOUT_NOW:
            sender = conn.get("leader") or self._last_leader
            message = hc.decode_request(rpc_type, obj, self.id_of, timeout_now_term=self._terms.get(sender, 0))
            if not await self._admit(self.id_of(sender), reader):
                return False
            self._deliver(self.id_of(sender), dataclasses.replace(message, leader_id=self.id_of(sender)))
            writer.write(hc.encode_response(None))
            return True
        message = hc.decode_request(rpc_type, obj, self.id_of)
        if rpc_type == hc.RPC_APPEND_ENTRIES:
            self._learn_entries(message.entries)
            # the entries may have named the leader just now
            message = dataclasses.replace(message, leader_id=self.id_of(leader_address))
            conn["leader"] = self._last_leader = leader_address
            self._terms[leader_address] = message.term
        elif rpc_type == hc.RPC_INSTALL_SNAPSHOT:
            self.learn_configuration(message.meta.configuration)
            message = dataclasses.replace(message, leader_id=self.id_of(leader_address))
            if self._fault_drops(message.leader_id):
                return False  # refuse the stream; the sender retries later
            message = await self._receive_snapshot(message, decoder, reader)
            if message is None:
                return False
        from_id = message.candidate_id if rpc_type == hc.RPC_REQUEST_VOTE else message.leader_id
        if rpc_type != hc.RPC_INSTALL_SNAPSHOT and not await self._admit(from_id, reader):
            return False
        slot = _Awaiting(rpc_type, message, self._loop.create_future())
        self._awaiting.setdefault(from_id, []).append(slot)
        self._deliver(from_id, message)
        try:
            async with asyncio.timeout(self.options.io_timeout):
                response = await slot.answer
        except TimeoutError:
            self._log("WARN", NET_LOGGER, "no answer to an incoming command, closing the connection",
                      [("from", from_id), ("rpc", hc.RPC_NAMES[rpc_type])])
            return False
        finally:
            waiting = self._awaiting.get(from_id)
            if waiting and slot in waiting:
                waiting.remove(slot)
        if response is _VANISHED:
            await self._black_hole(reader)
            return False
        writer.write(hc.encode_response(response))
        if writer.transport.get_write_buffer_size() > READ_SIZE:
            await writer.drain()
        return True

    def _fault_drops(self, from_id: str) -> bool:
        faults = self.options.faults
        return faults is not None and bool(faults.rules) and faults.verdict(from_id, "in")[0]

    async def _admit(self, from_id: str, reader: asyncio.StreamReader) -> bool:
        """Whether a request of ``from_id`` goes on to the core now, after
        what a fault rule says: held back (the requests behind it wait with
        it, so order holds), or dropped: then its answer never comes and no
        later answer may overtake it, so the connection is black-holed and
        closed (False)."""
        faults = self.options.faults
        if faults is None or not faults.rules:
            return True
        drop, delay = faults.verdict(from_id, "in")
        if drop:
            await self._black_hole(reader)
            return False
        if delay:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
        return not self._closed

    async def _black_hole(self, reader: asyncio.StreamReader) -> None:
        """Read and discard what the peer sends for ``io_timeout``, as a
        firewall that drops its packets would, so that it gives up on its
        own (its answers are overdue) rather than see the connection close."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.options.io_timeout):
                while await reader.read(READ_SIZE):
                    pass

    async def _receive_snapshot(self, message: InstallSnapshot, decoder: hc.StreamDecoder,
                                reader: asyncio.StreamReader) -> InstallSnapshot | None:
        meta = message.meta
        sink = None
        remaining = meta.size
        try:
            if self.snapshot_sink is None:
                raise RuntimeError("no snapshot sink configured")
            sink = self.snapshot_sink(message.leader_id, meta)
            loop = self._loop
            while remaining > 0:
                chunk = decoder.read_raw(min(remaining, _SNAPSHOT_CHUNK))
                if not chunk:
                    async with asyncio.timeout(self.options.io_timeout):
                        chunk = await reader.read(min(remaining, _SNAPSHOT_CHUNK))
                    if not chunk:
                        raise EOFError("unexpected EOF")
                remaining -= len(chunk)
                await loop.run_in_executor(None, sink.write, chunk)
            handle = await loop.run_in_executor(None, sink.close)
            sink = None
        except Exception as e:
            self._log("ERROR", RAFT_LOGGER, "failed to copy snapshot", [("error", f"{type(e).__name__}: {e}")])
            if sink is not None:
                try:
                    sink.cancel()
                except Exception:
                    pass
            return None
        return dataclasses.replace(message, data=handle)

    # --- snapshots out -------------------------------------------------------------

    def _start_snapshot(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        running = self._snapshot_sends.get(to_id)
        if running is not None and not running.done():
            return
        self._snapshot_sends[to_id] = self._loop.create_task(self._send_snapshot(to_id, address, message),
                                                             name=f"raftkv-hc-snapshot-{to_id}")

    async def _send_snapshot(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        writer = None
        source = None
        loop = self._loop
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
            self._receive(to_id, hc.decode_response(message, *item))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._log("ERROR", RAFT_LOGGER, "failed to send snapshot to",
                      [("peer", self._describe(to_id)), ("error", f"{e}")])
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


def _answers(request: AppendEntries, response: AppendEntriesResponse) -> bool:
    """Whether the core's AppendEntries ``response`` answers ``request``."""
    if request.heartbeat or response.heartbeat:
        return request.heartbeat and response.heartbeat
    return request.prev_log_index == response.prev_log_index
