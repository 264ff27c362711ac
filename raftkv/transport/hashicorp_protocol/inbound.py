"""Inbound connections of the hashicorp transport: requests served one at a time.

Theory of operation
-------------------
Like hashicorp's ``handleConn``, :meth:`HashicorpAcceptor.serve` serves a
connection one request at a time: decode, hand the message to the core
(``handler(from_id, message)``), wait for the core's response, write it,
read the next. The core answers through ``send(to, address, response)``;
:meth:`HashicorpAcceptor.answer` gives the response to the oldest request
of ``to`` still waiting for that kind of answer (an AppendEntries answer
must also echo the request's previous index, or its heartbeat flag). A
request the core leaves unanswered for ``io_timeout`` closes its
connection. TimeoutNow is answered at once (the core has no response for
it). An InstallSnapshot's bytes are streamed into ``snapshot_sink(from_id,
meta)`` before the core hears of it.

A frame that does not decode, or breaks the decoder's limits (the frame limit
on buffered bytes, per-value caps of codec.StreamDecoder), is logged as
``failed to decode incoming command`` and closes that connection only. Beyond
``max_connections`` accepted connections a new one is closed at once, with the
raftkv transport's WARN line (:mod:`raftkv.transport.gotext`). Inbound reads
have no idle deadline here: Go peers keep pooled connections open and would log
an error for each one closed under them.

Fault injection: a request is offered to the injector (direction ``in``)
before the core hears of it. Held back, the requests behind it wait with it.
Dropped, or answered with an answer the injector drops on the way out
(:data:`VANISHED`), its connection goes quiet: answers come in request order
and none may overtake the missing one, so the peer's bytes are read and
discarded for ``io_timeout``, as a black-holing firewall would, and the
connection is then closed. A dropped snapshot stream is refused by closing
its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any, Callable, Protocol

from raftkv.raft.configuration import Configuration
from raftkv.raft.messages import AppendEntries, AppendEntriesResponse, InstallSnapshot, SnapshotMeta

from ..codec import CodecError
from ..contract import NET_LOGGER, RAFT_LOGGER
from ..gotext import OVER_LIMIT_MESSAGE, OverLimitLines, over_limit_fields
from ..options import TransportOptions
from ..stream import READ_SIZE, sockaddr
from . import codec as hc

__all__ = ["VANISHED", "AcceptorOwner", "Awaiting", "HashicorpAcceptor"]

_SNAPSHOT_CHUNK = 1024 * 1024
VANISHED = object()             # the answer to a request whose answer a fault rule dropped


class AcceptorOwner(Protocol):
    """What the acceptor needs of its transport (HashicorpTransport)."""

    options: TransportOptions
    loop: asyncio.AbstractEventLoop
    closed: bool
    closing: asyncio.Event
    snapshot_sink: Callable[[str, SnapshotMeta], Any] | None

    def log(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None: ...
    def deliver(self, from_id: str, message: object) -> None: ...
    def id_of(self, address: str) -> str: ...
    def learn_configuration(self, configuration: Configuration) -> None: ...
    def learn_entries(self, entries) -> None: ...


@dataclasses.dataclass
class Awaiting:
    """An inbound request waiting for the core's answer."""
    rpc_type: int
    request: object
    answer: asyncio.Future


class HashicorpAcceptor:
    """The connections a hashicorp transport accepted, and the requests on
    them waiting for the core's answers."""

    def __init__(self, transport: AcceptorOwner) -> None:
        self.t = transport
        self.options = transport.options
        self.connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self.awaiting: dict[str, list[Awaiting]] = {}
        self.terms: dict[str, int] = {}        # address -> last term heard from it as leader
        self.last_leader = ""
        self.over_limit = OverLimitLines(transport.options.log_interval)

    def answer(self, to_id: str, rpc_type: int, response: object, vanish: bool = False) -> None:
        """The core's answer to a request of ``to_id``: wake the connection
        that waits for it (with ``vanish``, to write nothing more)."""
        waiting = self.awaiting.get(to_id)
        if not waiting:
            return
        for i, slot in enumerate(waiting):
            if slot.rpc_type != rpc_type or slot.answer.done():
                continue
            if rpc_type == hc.RPC_APPEND_ENTRIES and not _answers(slot.request, response):
                continue
            del waiting[i]
            slot.answer.set_result(VANISHED if vanish else response)
            return

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection until it ends (see the module docstring)."""
        task = asyncio.current_task()
        if self.t.closed:
            writer.transport.abort()
            return
        remote = sockaddr(writer.get_extra_info("peername"))
        if len(self.connections) >= self.options.max_connections:
            writer.transport.abort()
            refused = self.over_limit.refuse(self.t.loop.time())
            if refused is not None:
                self.t.log("WARN", NET_LOGGER, OVER_LIMIT_MESSAGE,
                           over_limit_fields(self.options.max_connections, remote, refused))
            return
        self.connections[task] = writer
        self.t.log("DEBUG", NET_LOGGER, "accepted connection",
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
            self.t.log("ERROR", NET_LOGGER, "failed to decode incoming command", [("error", str(e))])
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self.connections.pop(task, None)
            writer.transport.abort() if self.t.closed else writer.close()

    async def _handle(self, rpc_type: int, obj: Any, decoder: hc.StreamDecoder,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: dict) -> bool:
        """Serve one request; False closes the connection. ``conn`` remembers
        the leader last heard on this connection: TimeoutNow names nobody."""
        leader = obj.get(b"Leader") if type(obj) is dict else None
        leader_address = leader.decode(errors="replace") if type(leader) is bytes else ""
        if rpc_type == hc.RPC_TIMEOUT_NOW:
            sender = conn.get("leader") or self.last_leader
            message = hc.decode_request(rpc_type, obj, self.t.id_of, timeout_now_term=self.terms.get(sender, 0))
            if not await self._admit(self.t.id_of(sender), reader):
                return False
            self.t.deliver(self.t.id_of(sender), dataclasses.replace(message, leader_id=self.t.id_of(sender)))
            writer.write(hc.encode_response(None))
            return True
        message = hc.decode_request(rpc_type, obj, self.t.id_of)
        if rpc_type == hc.RPC_APPEND_ENTRIES:
            self.t.learn_entries(message.entries)
            # the entries may have named the leader just now
            message = dataclasses.replace(message, leader_id=self.t.id_of(leader_address))
            conn["leader"] = self.last_leader = leader_address
            self.terms[leader_address] = message.term
        elif rpc_type == hc.RPC_INSTALL_SNAPSHOT:
            self.t.learn_configuration(message.meta.configuration)
            message = dataclasses.replace(message, leader_id=self.t.id_of(leader_address))
            if self._fault_drops(message.leader_id):
                return False  # refuse the stream; the sender retries later
            message = await self._receive_snapshot(message, decoder, reader)
            if message is None:
                return False
        from_id = message.candidate_id if rpc_type == hc.RPC_REQUEST_VOTE else message.leader_id
        if rpc_type != hc.RPC_INSTALL_SNAPSHOT and not await self._admit(from_id, reader):
            return False
        slot = Awaiting(rpc_type, message, self.t.loop.create_future())
        self.awaiting.setdefault(from_id, []).append(slot)
        self.t.deliver(from_id, message)
        try:
            async with asyncio.timeout(self.options.io_timeout):
                response = await slot.answer
        except TimeoutError:
            self.t.log("WARN", NET_LOGGER, "no answer to an incoming command, closing the connection",
                       [("from", from_id), ("rpc", hc.RPC_NAMES[rpc_type])])
            return False
        finally:
            waiting = self.awaiting.get(from_id)
            if waiting and slot in waiting:
                waiting.remove(slot)
        if response is VANISHED:
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
                    await self.t.closing.wait()
        return not self.t.closed

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
            if self.t.snapshot_sink is None:
                raise RuntimeError("no snapshot sink configured")
            sink = self.t.snapshot_sink(message.leader_id, meta)
            loop = self.t.loop
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
            self.t.log("ERROR", RAFT_LOGGER, "failed to copy snapshot", [("error", f"{type(e).__name__}: {e}")])
            if sink is not None:
                try:
                    sink.cancel()
                except Exception:
                    pass
            return None
        return dataclasses.replace(message, data=handle)


def _answers(request: AppendEntries, response: AppendEntriesResponse) -> bool:
    """Whether the core's AppendEntries ``response`` answers ``request``."""
    if request.heartbeat or response.heartbeat:
        return request.heartbeat and response.heartbeat
    return request.prev_log_index == response.prev_log_index
