"""Outbound connections of the hashicorp transport: requests pipelined, answers in order.

Theory of operation
-------------------
Per peer there are two long-lived connections, as hashicorp keeps:
``append`` carries AppendEntries with entries (its pipeline connection),
``rpc`` carries heartbeats, vote requests and TimeoutNow (its pooled
connection). Each is a :class:`Pipeline`: requests are written as they come
and remembered in order; a reader matches each answer to the oldest one and
hands the transport the response, completed from the request
(``codec.decode_response``). An answer that does not come within
``io_timeout`` closes the connection (hashicorp sets the same deadline);
what was in flight is lost and Raft retries.

A failure (a dial, a write, an overdue or undecodable answer) is reported as
the raftkv transport's channels report theirs (:mod:`raftkv.transport.channel`:
hashicorp's lines, at most one per ``log_interval`` for a repeated one), and
the connection is redialed after the same capped backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

from ..channel import APPEND, HEARTBEAT, FailureLogRounds, failure_report
from ..codec import CodecError
from ..contract import NET_LOGGER, RAFT_LOGGER
from ..gotext import dial_error_text, io_error_text
from ..options import TransportOptions
from ..stream import READ_SIZE, open_stream, sockaddr
from . import codec as hc

__all__ = ["APPEND", "RPC", "Pipeline", "PipelineOwner"]

RPC = "rpc"


class PipelineOwner(Protocol):
    """What a pipeline needs of its transport (HashicorpTransport)."""

    options: TransportOptions
    loop: asyncio.AbstractEventLoop
    closed: bool

    def log(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None: ...
    def describe(self, peer_id: str) -> object: ...
    def backoff(self, failures: int) -> float: ...
    def receive(self, from_id: str, message: object) -> None: ...


class Pipeline:
    """One pipelined connection to one peer for one kind of request."""

    def __init__(self, t: PipelineOwner, peer_id: str, kind: str, address: str) -> None:
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
            self.task = self.t.loop.create_task(self._run(), name=f"raftkv-hc-{self.kind}-{self.peer_id}")

    async def _run(self) -> None:
        t = self.t
        while not t.closed:
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
            while not answers.done() and address == self.address and not self.t.closed:
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
                        t.log("ERROR", NET_LOGGER, "peer answered with an error",
                              [("peer", self.peer_id), ("error", str(e))])
                        continue
                    self.failures = 0
                    self.rounds.reset()
                    if response is not None:
                        t.receive(self.peer_id, response)
            except CodecError as e:
                t.log("ERROR", NET_LOGGER, "failed to decode response", [("peer", self.peer_id), ("error", str(e))])
                return str(e)

    def _failed(self, error: str) -> None:
        self.failures += 1
        backoff = self.t.backoff(self.failures)
        kind = APPEND if self.kind == APPEND else HEARTBEAT
        report = failure_report(kind, self.last, self.peer_id, self.address,
                                self.t.describe(self.peer_id), backoff, error)
        if report is not None and self.rounds.admit(report[1], time.monotonic()):
            level, message, fields = report
            self.t.log(level, RAFT_LOGGER, message, fields)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
