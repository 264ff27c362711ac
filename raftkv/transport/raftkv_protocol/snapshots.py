"""Snapshot streaming over raftkv's frames: the sending and the receiving end.

Theory of operation
-------------------
``send`` of an ``InstallSnapshot`` does not queue it on a channel: it starts
a stream (:meth:`SnapshotStreams.send`) on a connection of its own, one per
peer at a time. The sender dials (Hello and cluster key as any connection),
writes the header (``data`` travels as nil), the bytes read from
``snapshot_source(meta)`` in ``SnapshotChunk`` frames, a final chunk with
``done=True``; then it waits for the receiver's ``SnapshotAck``, listening
for it from the start: a receiver that gives up early (its disk is full,
say) answers mid-stream.

The receiving end (:class:`SnapshotReceiver`, driven by the accepting
connection's read loop) writes each chunk to ``snapshot_sink(from_id,
meta)`` as it arrives and, when done, calls ``handler(from_id,
InstallSnapshot(..., data=handle))`` with the handle returned by the sink's
``close()``, then acknowledges. A stream whose length is not the
``meta.size`` announced (when nonzero) is refused (``failed to receive whole
snapshot``). Whether a stream may be stored at all (a stranger's may not) is
decided before it starts, by the acceptor (:mod:`.inbound`).

Neither side holds more than a chunk or so in memory: writes wait for the
socket to drain and the receiver reads no further until a chunk is stored.
Blocking file calls run in a worker thread (:class:`Blocking`), one at a time
per snapshot; cleanup waits for a call still running. Any failure cancels
the sink and is answered with ``SnapshotAck(False, error)``; the sender logs
``failed to send snapshot to`` and reports it through
``on_snapshot_failed(peer_id)``, and the core offers the snapshot again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any, Callable, Protocol

from raftkv.raft.messages import InstallSnapshot, SnapshotMeta

from ..codec import CodecError, SnapshotAck, SnapshotChunk, encode, read_frame
from ..contract import NET_LOGGER, RAFT_LOGGER, Handler, SnapshotSource, SnapshotWriter
from ..gotext import dial_error_text, io_error_text
from ..options import TransportOptions
from ..stream import sockaddr

__all__ = ["Blocking", "SnapshotFailure", "SnapshotReceiver", "SnapshotStreams", "StreamsOwner"]

CONTROL_MAX_FRAME = 64 * 1024    # the SnapshotAck is tiny; refuse to buffer more for one
ACK_ERROR_MAX = 4096             # characters of a SnapshotAck's error text


class Blocking:
    """Runs one object's blocking calls in a worker thread, one at a time.
    ``settle()`` waits for a call still running after its awaiter was
    cancelled, so cleanup never touches the object concurrently."""

    __slots__ = ("_executor", "_pending")

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self._executor = executor
        self._pending: concurrent.futures.Future | None = None

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._pending = self._executor.submit(fn, *args)
        return await asyncio.wrap_future(self._pending)

    async def settle(self) -> None:
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.wait([asyncio.wrap_future(pending)])


class SnapshotFailure(Exception):
    """A snapshot stream failed; the message is what gets logged."""


class StreamsOwner(Protocol):
    """What the snapshot streams need of their transport (TcpTransport)."""

    loop: asyncio.AbstractEventLoop
    handler: Handler
    snapshot_source: Callable[[SnapshotMeta], SnapshotSource] | None
    snapshot_sink: Callable[[str, SnapshotMeta], SnapshotWriter] | None
    on_snapshot_failed: Callable[[str], None] | None
    options: TransportOptions

    def log(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None: ...
    def describe(self, peer_id: str) -> object: ...
    async def dial(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


class SnapshotStreams:
    """The snapshot streams of one transport: the one being sent to each
    peer, and the worker threads both ends run their file calls in."""

    def __init__(self, transport: StreamsOwner) -> None:
        self.t = transport
        self.sends: dict[str, asyncio.Task] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def offload(self) -> Blocking:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="raftkv-snapshot")
        return Blocking(self._executor)

    def receive(self, from_id: str, header: InstallSnapshot, writer: asyncio.StreamWriter) -> SnapshotReceiver:
        """The receiving end of a stream whose header just arrived."""
        receiver = SnapshotReceiver(self, from_id, header, writer)
        receiver.open()
        return receiver

    async def cancel(self, peer_id: str) -> None:
        """Abandon the stream to ``peer_id``, if one is running."""
        task = self.sends.pop(peer_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def cancel_all(self) -> list[asyncio.Task]:
        """Cancel every stream being sent; the tasks, to wait for."""
        sends = list(self.sends.values())
        for task in sends:
            task.cancel()
        return sends

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def send(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        """Start streaming ``message``'s snapshot to ``to_id``."""
        t = self.t
        running = self.sends.get(to_id)
        if running is not None and not running.done():
            # One stream per peer; the core hears the outcome of the running
            # one and will offer again if it still needs to.
            t.log("DEBUG", NET_LOGGER, "snapshot transfer already in progress",
                  [("peer", to_id), ("id", message.meta.id)])
            return
        self.sends[to_id] = t.loop.create_task(
            self._send(to_id, address, message), name=f"raftkv-snapshot-{to_id}")

    async def _send(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        t = self.t
        writer: asyncio.StreamWriter | None = None
        source: Any = None
        blocking = self.offload()
        try:
            if t.snapshot_source is None:
                raise SnapshotFailure("no snapshot source configured")
            try:
                reader, writer = await t.dial(address)
            except Exception as e:
                raise SnapshotFailure(dial_error_text(address, e)) from None
            try:
                source = t.snapshot_source(message.meta)
            except Exception as e:
                raise SnapshotFailure(f"failed to open snapshot: {e}") from None
            try:
                await self._stream(reader, writer, message, source, blocking)
            except (OSError, TimeoutError) as e:
                raise SnapshotFailure(io_error_text(
                    "write", sockaddr(writer.get_extra_info("sockname")),
                    sockaddr(writer.get_extra_info("peername")), e)) from None
            except CodecError as e:
                raise SnapshotFailure(str(e)) from None
        except SnapshotFailure as e:
            t.log("ERROR", RAFT_LOGGER, "failed to send snapshot to",
                  [("peer", t.describe(to_id)), ("error", str(e))])
            if t.on_snapshot_failed is not None:
                try:
                    t.on_snapshot_failed(to_id)
                except Exception as cb_error:
                    t.log("ERROR", NET_LOGGER, "snapshot failure callback raised",
                          [("peer", to_id), ("error", f"{type(cb_error).__name__}: {cb_error}")])
        finally:
            if writer is not None:
                writer.transport.abort()
            await blocking.settle()
            if source is not None:
                try:
                    source.close()
                except Exception:
                    pass
            if self.sends.get(to_id) is asyncio.current_task():
                del self.sends[to_id]

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      message: InstallSnapshot, source: Any, blocking: Blocking) -> None:
        t = self.t
        # Waiting for drain after each chunk is what bounds memory: at most
        # one chunk plus the socket's buffer is ever held here. The receiver
        # may give up early (its disk is full, say): its SnapshotAck can then
        # arrive mid-stream, so it is listened for from the start.
        ack_task = asyncio.ensure_future(read_frame(reader, CONTROL_MAX_FRAME))
        try:
            writer.write(encode(dataclasses.replace(message, data=None)))
            size = t.options.snapshot_chunk_size
            while not ack_task.done():
                try:
                    chunk = await blocking.call(source.read, size)
                except Exception as e:
                    raise SnapshotFailure(f"failed to read snapshot: {e}") from None
                if not chunk:
                    break
                writer.write(encode(SnapshotChunk(bytes(chunk), False)))
                async with asyncio.timeout(t.options.io_timeout):
                    await writer.drain()
            if not ack_task.done():
                writer.write(encode(SnapshotChunk(b"", True)))
                async with asyncio.timeout(t.options.io_timeout):
                    await writer.drain()
            try:
                async with asyncio.timeout(t.options.snapshot_ack_timeout):
                    ack = await ack_task
            except TimeoutError:
                raise SnapshotFailure("i/o timeout waiting for the receiver") from None
        finally:
            if not ack_task.done():
                ack_task.cancel()
            elif not ack_task.cancelled():
                ack_task.exception()  # retrieved: it was handled (or superseded) above
        if ack is None:
            raise SnapshotFailure("EOF")
        if type(ack) is not SnapshotAck:
            raise SnapshotFailure(f"unexpected {type(ack).__name__} instead of SnapshotAck")
        if not ack.success:
            raise SnapshotFailure(ack.error or "rejected by the receiver")


class SnapshotReceiver:
    """The receiving end of one snapshot stream: chunks go to the sink in
    order; on the last one the node gets ``InstallSnapshot(data=handle)``."""

    def __init__(self, streams: SnapshotStreams, from_id: str, header: InstallSnapshot,
                 writer: asyncio.StreamWriter) -> None:
        self.t = streams.t
        self.from_id = from_id
        self.header = header
        self.writer = writer
        self.sink: Any = None
        self.received = 0
        self.blocking = streams.offload()

    def open(self) -> None:
        t = self.t
        if t.snapshot_sink is None:
            self.fail("failed to create snapshot to install", "no snapshot sink configured")
        try:
            self.sink = t.snapshot_sink(self.from_id, self.header.meta)
        except Exception as e:
            self.fail("failed to create snapshot to install", str(e))

    async def chunk(self, chunk: SnapshotChunk) -> bool:
        """Store one chunk; True when the stream is complete."""
        if chunk.data:
            try:
                await self.blocking.call(self.sink.write, chunk.data)
            except Exception as e:
                await self._cancel()
                self.fail("failed to copy snapshot", str(e))
            self.received += len(chunk.data)
        if not chunk.done:
            return False
        expected = self.header.meta.size
        if expected and self.received != expected:
            await self._cancel()
            self.t.log("ERROR", RAFT_LOGGER, "failed to receive whole snapshot",
                       [("received", f"{self.received} / {expected}")])
            self._nack(f"received {self.received} of {expected} bytes")
            raise SnapshotFailure("short snapshot")
        try:
            handle = await self.blocking.call(self.sink.close)
        except Exception as e:
            await self._cancel()
            self.fail("failed to finalize snapshot", str(e))
        self.sink = None
        try:
            self.t.handler(self.from_id, dataclasses.replace(self.header, data=handle))
        except Exception as e:
            self.t.log("ERROR", NET_LOGGER, "failed to handle incoming command",
                       [("error", f"{type(e).__name__}: {e}")])
            self._nack(f"{type(e).__name__}: {e}")
            raise SnapshotFailure("handler failed") from None
        self.writer.write(encode(SnapshotAck(True, "")))
        return True

    async def abandon(self, reason: str) -> None:
        await self._cancel()

    async def _cancel(self) -> None:
        await self.blocking.settle()
        sink, self.sink = self.sink, None
        if sink is not None:
            try:
                sink.cancel()
            except Exception as e:
                self.t.log("ERROR", NET_LOGGER, "failed to cancel snapshot",
                           [("error", f"{type(e).__name__}: {e}")])

    def _nack(self, error: str) -> None:
        if len(error) > ACK_ERROR_MAX:
            error = error[:ACK_ERROR_MAX - 3] + "..."  # the sender refuses longer text (MAX_STR_LEN)
        try:
            self.writer.write(encode(SnapshotAck(False, error)))
        except Exception:
            pass

    def fail(self, message: str, error: str) -> None:
        self.t.log("ERROR", RAFT_LOGGER, message, [("error", error)])
        self._nack(error)
        raise SnapshotFailure(message)
