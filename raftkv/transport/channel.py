"""Outbound channels of the raftkv transport: per peer, per kind of traffic.

Theory of operation
-------------------
Per peer there are two long-lived outbound *channels*, each one connection
with its own bounded queue and one writer task:

* ``append``: AppendEntries that are not heartbeats (batches of entries, and
  the empty probes that precede them, so replication keeps its order);
* ``heartbeat``: everything else -- heartbeats, votes, responses, TimeoutNow.

so a heartbeat never waits behind a multi-megabyte batch (hashicorp/raft does
the same). :meth:`Channel.enqueue` is synchronous: it appends the encoded
frame to the channel's queue and wakes the writer. The writer takes
*everything* queued and writes it with one ``write(b"".join(...))``, so a
burst of sends costs one syscall, and no task is created per message. When
nothing is queued and the socket keeps up, ``enqueue`` writes the frame at
once instead (one loop iteration less per message).

Loss is normal: Raft retries. A queue over its bound drops its oldest frames
(counted in ``stats()``); a dead connection loses what was in flight. A
channel dials on demand and, after a failure, waits a backoff of 10ms, 10ms,
10ms, 20ms, 40ms ... capped at 500ms before the next dial
(:func:`backoff_delay`: hashicorp's heartbeat backoff; the cap is its
HeartbeatTimeout/2), so a peer that comes back is reached again within half
a second. Peers never write on our outbound connections, so a watcher task
reads only to learn at once that one ended.

Failures are reported as the RPC that failed, in hashicorp's words and keys,
with Go's error texts (:mod:`.gotext`): :func:`failure_report` says
``failed to appendEntries to`` (peer, error) for the append channel, and on
the heartbeat channel according to the last message queued on it:
``failed to heartbeat to`` (peer, backoff time, error) for a heartbeat,
``failed to make requestVote RPC`` (target, error, term) for a vote or
pre-vote request, a DEBUG ``failed to make TimeoutNow RPC to ...`` for a
leadership transfer. Only a leader sends AppendEntries, so only a leader
prints the replication lines. Responses are not RPCs of this node (in
hashicorp they travel back on the caller's connection): a follower that
cannot deliver one to a dead leader says nothing, as hashicorp's does. A
connection that breaks while nothing waits to be sent is not a failed RPC
either: it is dropped quietly and the next message dials afresh (messages
queued meanwhile were never written, so they have not failed).

A dead peer must not bury the rest of the log: a channel logs the first
failure of a streak, then at most one line per ``log_interval`` (5s,
:class:`FailureLogRounds`), while it keeps redialing on the backoff above.
The streak ends, and failures count from zero again, once a connection has
stayed up for the backoff cap.

The hashicorp transport's connections (:mod:`.hashicorp_protocol.transport`)
use the same backoff, failure lines and rounds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta
from typing import Any, Protocol

from raftkv.raft.messages import AppendEntries, RequestVote, TimeoutNow

from .contract import NET_LOGGER, RAFT_LOGGER
from .gotext import dial_error_text, io_error_text
from .options import TransportOptions
from .stream import WRITE_HIGH_WATER, sockaddr

__all__ = ["APPEND", "HEARTBEAT", "Channel", "ChannelOwner", "Connection", "FailureLogRounds", "backoff_delay",
           "channel_for", "failure_report"]

APPEND = "append"
HEARTBEAT = "heartbeat"


def channel_for(message: object) -> str:
    """Which outbound channel carries ``message``."""
    if type(message) is AppendEntries and not message.heartbeat:
        return APPEND
    return HEARTBEAT


def backoff_delay(failures: int, base: float = 0.010, cap: float = 0.5) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1-based):
    10ms, 10ms, 10ms, 20ms, 40ms ... capped, as hashicorp's
    cappedExponentialBackoff() in its heartbeat loop."""
    return min(base * (1 << max(0, min(failures, 32) - 3)), cap)


class FailureLogRounds:
    """When a channel's failure is worth a line: the first failure of a
    streak at once, then the same report at most once per ``interval``. A
    different report (a candidate's vote request, then the same node's
    heartbeat as leader) is news and is written at once."""

    __slots__ = ("interval", "what", "at", "held")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.what: object = None
        self.at = 0.0
        self.held = 0  # lines held back, over the channel's life

    def admit(self, what: object, now: float) -> bool:
        if what == self.what and now - self.at < self.interval:
            self.held += 1
            return False
        self.what, self.at = what, now
        return True

    def reset(self) -> None:
        """The peer was reached: the next failure starts a new streak."""
        self.what = None


def failure_report(kind: str, last: object, peer_id: str, address: str, server: object,
                   backoff: float, error: str) -> tuple[str, str, list[tuple[str, object]]] | None:
    """What hashicorp/raft logs when the RPC a channel carries fails:
    (level, message, fields), or None when hashicorp would say nothing.

    ``last`` is the last message queued on a heartbeat channel; ``server`` is
    the peer as hashicorp prints a Server (``{Voter n2 127.0.0.1:9001}``)."""
    if kind == APPEND:
        return "ERROR", "failed to appendEntries to", [("peer", server), ("error", error)]
    kind_of = type(last)
    if kind_of is AppendEntries:
        return "ERROR", "failed to heartbeat to", [
            ("peer", address), ("backoff time", timedelta(seconds=backoff)), ("error", error)]
    if kind_of is RequestVote:
        return "ERROR", "failed to make requestVote RPC", [
            ("target", server), ("error", error), ("term", last.term)]
    if kind_of is TimeoutNow:
        # hashicorp logs the error's text alone, at DEBUG
        return "DEBUG", f"failed to make TimeoutNow RPC to {peer_id}: {error}", []
    return None


class ChannelOwner(Protocol):
    """What a channel needs of its transport (TcpTransport)."""

    loop: asyncio.AbstractEventLoop
    options: TransportOptions

    def log(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None: ...
    def describe(self, peer_id: str) -> object: ...
    async def dial(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


class Connection:
    """One dialed connection of a channel, and what became of it."""

    __slots__ = ("reader", "writer", "address", "local", "remote", "lost", "write_failed", "watcher",
                 "healthy_timer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str) -> None:
        self.reader = reader
        self.writer = writer
        self.address = address
        self.local = sockaddr(writer.get_extra_info("sockname"))
        self.remote = sockaddr(writer.get_extra_info("peername"))
        self.lost: str | None = None
        # frames were handed to this connection and the write failed: they are
        # lost, so the loss is a failed RPC even if nothing else is queued
        self.write_failed = False
        self.watcher: asyncio.Task | None = None
        self.healthy_timer: asyncio.TimerHandle | None = None


class Channel:
    """One outbound connection to one peer for one kind of traffic: a
    bounded frame queue drained by a single long-lived writer task."""

    def __init__(self, transport: ChannelOwner, peer_id: str, kind: str, address: str) -> None:
        self.t = transport
        self.options = transport.options
        self.peer_id = peer_id
        self.kind = kind
        self.address = address
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self.sent_frames = 0
        # the last message queued on a heartbeat channel: what a failure is
        # reported as (a heartbeat, a vote request, a response ...)
        self.last: object = None
        self.failures = 0
        self.retry_at = 0.0
        self.rounds = FailureLogRounds(self.options.log_interval)
        self.conn: Connection | None = None
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None

    def enqueue(self, frame: bytes, address: str) -> None:
        if address != self.address:
            self.address = address  # the writer redials when it notices
        q = self.queue
        conn = self.conn
        if not q and conn is not None and conn.lost is None and conn.address == address:
            # Fast path: nothing is waiting before this frame and the socket
            # keeps up, so write now instead of waking the writer task (one
            # loop iteration less per message). The writer still handles
            # dialing, backpressure and the drain timeout.
            tr = conn.writer.transport
            if not tr.is_closing() and tr.get_write_buffer_size() < WRITE_HIGH_WATER:
                try:
                    conn.writer.write(frame)
                except Exception as e:  # the writer task notices and redials
                    conn.lost = io_error_text("write", conn.local, conn.remote, e)
                    conn.write_failed = True
                else:
                    self.sent_frames += 1
                    return
        q.append(frame)
        self.queued_bytes += len(frame)
        t, o = self.t, self.options
        while len(q) > 1 and (len(q) > o.max_queue_frames or self.queued_bytes > o.max_queue_bytes):
            # The oldest frames are the stalest; Raft resends what matters.
            self.queued_bytes -= len(q.popleft())
            self.dropped += 1
        if self.task is None:
            self.task = t.loop.create_task(self._run(), name=f"raftkv-send-{self.kind}-{self.peer_id}")
        self.wakeup.set()

    async def _run(self) -> None:
        try:
            await self._send_loop()
        except Exception as e:
            # A bug, not a network fault. Let the next send start afresh
            # rather than leave this peer silently unreachable.
            self.t.log("ERROR", NET_LOGGER, "send loop failed",
                       [("peer", self.peer_id), ("error", f"{type(e).__name__}: {e}")])
            self._drop_connection()
            self.task = None

    async def _send_loop(self) -> None:
        t, o = self.t, self.options
        loop = t.loop
        while True:
            self.wakeup.clear()
            conn = self.conn
            if conn is not None and (conn.lost is not None or conn.address != self.address):
                if conn.lost is not None and conn.write_failed:
                    self._failed(conn.lost)
                self._drop_connection()
            if not self.queue:
                await self.wakeup.wait()
                continue
            if self.conn is None:
                delay = self.retry_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                address = self.address
                try:
                    reader, writer = await t.dial(address)
                except Exception as e:
                    self._failed(dial_error_text(address, e))
                    continue
                self.conn = conn = Connection(reader, writer, address)
                conn.watcher = loop.create_task(self._watch(conn))
                conn.healthy_timer = loop.call_later(o.backoff_cap, self._healthy, conn)
            conn = self.conn
            frames = self.queue
            self.queue = deque()
            self.queued_bytes = 0
            try:
                conn.writer.write(b"".join(frames))
                async with asyncio.timeout(o.io_timeout):
                    await conn.writer.drain()
                self.sent_frames += len(frames)
            except Exception as e:  # whatever broke, this connection is done
                if conn.lost is None:
                    conn.lost = io_error_text("write", conn.local, conn.remote, e)
                conn.write_failed = True

    async def _watch(self, conn: Connection) -> None:
        """Peers never write on our outbound connections, so a read returns
        only when the connection ends: learn of it now, not at the next write."""
        try:
            while await conn.reader.read(4096):
                pass
            error = "EOF"
        except (OSError, asyncio.IncompleteReadError) as e:
            error = io_error_text("read", conn.local, conn.remote, e)
        if conn.lost is None:
            conn.lost = error
        self.wakeup.set()

    def _healthy(self, conn: Connection) -> None:
        """The connection has stayed up for the backoff cap: the peer is
        reachable again, so the next failure starts a new streak (a new
        backoff from 10ms, and a line at once)."""
        conn.healthy_timer = None
        if self.conn is conn and conn.lost is None:
            self.failures = 0
            self.rounds.reset()

    def _failed(self, error: str) -> None:
        """The frames of this channel could not be delivered: back off, and
        report it as hashicorp does, once per ``log_interval`` at most."""
        t = self.t
        now = t.loop.time()
        self.failures += 1
        backoff = backoff_delay(self.failures, self.options.backoff_base, self.options.backoff_cap)
        self.retry_at = now + backoff
        report = failure_report(self.kind, self.last, self.peer_id, self.address,
                                t.describe(self.peer_id), backoff, error)
        what = APPEND if self.kind == APPEND else type(self.last)
        if report is None or not self.rounds.admit(what, now):
            return
        level, message, fields = report
        t.log(level, RAFT_LOGGER, message, fields)

    def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if conn.watcher is not None:
                conn.watcher.cancel()
            if conn.healthy_timer is not None:
                conn.healthy_timer.cancel()
            conn.writer.transport.abort()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        watcher = self.conn.watcher if self.conn is not None else None
        self._drop_connection()
        if watcher is not None:
            await asyncio.gather(watcher, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {"address": self.address, "connected": self.conn is not None and self.conn.lost is None,
                "queued": len(self.queue), "queued_bytes": self.queued_bytes, "dropped": self.dropped,
                "sent": self.sent_frames, "failures": self.failures, "held_lines": self.rounds.held}
