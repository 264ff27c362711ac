"""TCP transport: Raft messages over asyncio streams, one-way per connection.

Theory of operation
-------------------
Every node dials every peer for its *own* outbound messages and never writes
replies on a connection it accepted: a reply is just another ``send`` to the
address the core names in its ``Send`` effect, so it travels over this node's
own dial. A connection therefore has a direction, and its first frame is a
``Hello`` naming the caller; the acceptor attributes everything that follows
to that node id and hands each message to ``handler(from_id, message)``
synchronously, in arrival order.

Per peer there are two long-lived outbound *channels*, each one connection
with its own bounded queue and one writer task:

* ``append``: AppendEntries that are not heartbeats (batches of entries, and
  the empty probes that precede them, so replication keeps its order);
* ``heartbeat``: everything else -- heartbeats, votes, responses, TimeoutNow.

so a heartbeat never waits behind a multi-megabyte batch (hashicorp/raft does
the same). ``send`` is synchronous: it encodes the frame, appends it to the
channel queue and wakes the writer. The writer takes *everything* queued and
writes it with one ``write(b"".join(...))``, so a burst of sends costs one
syscall, and no task is created per message.

Loss is normal: Raft retries. A queue over its bound drops its oldest frames
(counted in ``stats()``); a dead connection loses what was in flight. A
channel dials on demand and, after a failure, waits a backoff of 10ms, 10ms,
10ms, 20ms, 40ms ... capped at 500ms before the next dial (hashicorp's
heartbeat backoff; the cap is its HeartbeatTimeout/2), so a peer that comes
back is reached again within half a second.

Failures are reported as the RPC that failed, in hashicorp's words and keys,
with Go's error texts (``dial tcp 127.0.0.1:9001: connect: connection
refused``, ``EOF``): ``failed to appendEntries to`` (peer, error) for the
append channel, and on the heartbeat channel according to the last message
queued on it: ``failed to heartbeat to`` (peer, backoff time, error) for a
heartbeat, ``failed to make requestVote RPC`` (target, error, term) for a
vote or pre-vote request, a DEBUG ``failed to make TimeoutNow RPC to ...``
for a leadership transfer. Only a leader sends AppendEntries, so only a
leader prints the replication lines. Responses are not RPCs of this node
(in hashicorp they travel back on the caller's connection): a follower that
cannot deliver one to a dead leader says nothing, as hashicorp's does. A
connection that breaks while nothing waits to be sent is not a failed RPC
either: it is dropped quietly and the next message dials afresh (messages
queued meanwhile were never written, so they have not failed).

A dead peer must not bury the rest of the log: a channel logs the first
failure of a streak, then at most one line per ``log_interval`` (5s), while
it keeps redialing on the backoff above. The streak ends, and failures
count from zero again, once a connection has stayed up for the backoff cap.

Snapshots: ``send`` of an ``InstallSnapshot`` opens a dedicated connection:
Hello, the header (``data`` travels as nil), the bytes read from
``snapshot_source(meta)`` in ``SnapshotChunk`` frames, a final chunk with
``done=True``; then it waits for the receiver's ``SnapshotAck``. The
receiver writes each chunk to ``snapshot_sink(from_id, meta)`` as it arrives
and, when done, calls ``handler(from_id, InstallSnapshot(..., data=handle))``
with the handle returned by the sink's ``close()`` -- unless the sender is
not in the configuration (``learn_configuration``) while members are heard
from: the sink publishes the snapshot on the volume before the core could
ignore it, so such a stream is refused first (``SnapshotAck(False)``, a WARN
``refusing a snapshot from a server not in the configuration``). Neither side holds more
than a chunk or so in memory: writes wait for the socket to drain and the
receiver reads no further until a chunk is stored. Blocking file calls run in
a worker thread, one at a time per snapshot. Any failure cancels the sink,
and the sender reports it through ``on_snapshot_failed(peer_id)``.

A frame that does not decode (CodecError: malformed, oversized, truncated,
over one of the codec's unpacking limits, or a first frame that is not a
valid Hello) is logged as ``failed to decode incoming command`` and closes
that connection only.

What an accepted connection may hold, since anyone who reaches the port can
open one: every read has a deadline. The Hello (and the cluster-key proof,
or the TLS handshake) must come within ``io_timeout``; after it, a frame
once begun must be complete within ``io_timeout`` (a snapshot stream's next
chunk too), so a peer cannot park a half-sent frame and its buffer; a
connection with nothing pending may stay silent for ``idle_timeout``, then it
is closed (DEBUG ``closing idle connection``): a leader's append channel in a
quiet cluster is that, and the dialing side notices the EOF and redials
quietly when it next has something to send. Incomplete frames over 64KiB
count against one budget for all connections (``max_held``, four frames'
worth): a crowd each sending most of a frame cannot add up to gigabytes. Beyond ``max_connections``
accepted connections (TLS handshakes included) a new one is closed at once,
and a WARN ``too many connections, closing new ones`` says so at most once
per ``log_interval`` with the number refused since the last line.

Fault injection (tests and chaos runs only): with a :class:`FaultInjector`
(``faults=``) holding rules, each message sent or received is first offered
to it and may be dropped or held back with ``call_later``; see
:mod:`raftkv.transport.faults`.

Authentication: ``_handshake_out`` / ``_handshake_in`` are the only places a
connection is admitted. With ``authenticate`` (the cluster key, or a
:class:`~raftkv.transport.auth.ClusterKeyAuth`) both ends run the HMAC
challenge of :mod:`raftkv.transport.auth` right after the Hello; the
acceptor then writes on the accepted connection (challenge and proof) once,
before any Raft traffic. A caller that fails it is logged as ``refused
connection`` and closed; a caller that cannot authenticate the acceptor
fails its dial like any other dial error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import socket
import ssl
from collections import deque
from datetime import timedelta
from typing import Any, Callable, Protocol

from raftkv.raft.messages import AppendEntries, InstallSnapshot, RequestVote, SnapshotMeta, TimeoutNow
from raftkv.textforms import go_duration

from .auth import NONCE_SIZE, AuthError, ClusterKeyAuth
from .faults import FaultInjector
from .codec import (
    AuthChallenge,
    AuthProof,
    DEFAULT_MAX_FRAME,
    MAGIC,
    SMALL_BODY,
    SNAPSHOT_CHUNK_SIZE,
    VERSION,
    CodecError,
    FrameDecoder,
    Hello,
    SnapshotAck,
    SnapshotChunk,
    encode,
    hello,
    read_frame,
)

LogFn = Callable[[str, str, str, list[tuple[str, object]]], None]
Handler = Callable[[str, Any], None]

APPEND = "append"
HEARTBEAT = "heartbeat"

NET_LOGGER = "raft.net"
RAFT_LOGGER = "raft"

_READ_SIZE = 256 * 1024
_HELLO_MAX_FRAME = 64 * 1024      # a Hello is tiny; refuse to buffer more for one
_CONTROL_MAX_FRAME = 64 * 1024    # likewise the SnapshotAck
_WRITE_HIGH_WATER = 1024 * 1024   # drain() waits only past this much unsent data
_ACK_ERROR_MAX = 4096             # characters of a SnapshotAck's error text


_CONTROL_FRAMES = frozenset({Hello, SnapshotChunk, SnapshotAck, AuthChallenge, AuthProof})


class SnapshotWriter(Protocol):
    """What ``snapshot_sink`` returns: a place to store a snapshot as it
    arrives. ``close()`` finishes it and returns the runtime's handle;
    ``cancel()`` discards it. ``write``/``close`` may run in a worker thread."""

    def write(self, data: bytes) -> Any: ...
    def close(self) -> Any: ...
    def cancel(self) -> Any: ...


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


class OverLimitLines:
    """The WARN line for connections closed over ``max_connections``: the
    first at once, then at most one per ``interval``, each counting the
    refusals since the previous line."""

    __slots__ = ("interval", "logged", "logged_at", "refused")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.refused = 0      # over the transport's life
        self.logged = 0       # of those, reported in a line so far
        self.logged_at: float | None = None

    def refuse(self, now: float) -> int | None:
        """Count one refusal; the number to report if a line is due now."""
        self.refused += 1
        if self.logged_at is not None and now - self.logged_at < self.interval:
            return None
        self.logged_at = now
        count, self.logged = self.refused - self.logged, self.refused
        return count


def over_limit_fields(limit: int, remote: str, refused: int) -> list[tuple[str, object]]:
    return [("limit", limit), ("remote-address", remote), ("refused", refused)]


OVER_LIMIT_MESSAGE = "too many connections, closing new ones"


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


def _no_log(level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None:
    pass


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, int]:
    """Go's net.SplitHostPort, enough for "host:port" and "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"address {address}: invalid port") from None
    if not 0 < number < 65536:
        raise ValueError(f"address {address}: invalid port")
    return host, number


def _sockaddr(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return join_host_port(str(addr[0]), int(addr[1]))
    return str(addr)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    # Frames are already batched per wakeup; Nagle would only add latency.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass


def dial_error_text(address: str, exc: BaseException) -> str:
    """A dial failure in Go's words, so logs read like hashicorp's."""
    if isinstance(exc, ValueError):
        return f"dial tcp: {exc}"
    if isinstance(exc, socket.gaierror):
        host = address.rpartition(":")[0].strip("[]")
        return f"dial tcp: lookup {host}: no such host"
    if isinstance(exc, TimeoutError):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return f"dial tcp {address}: connect: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return f"dial tcp {address}: {exc}"


def io_error_text(op: str, local: str, remote: str, exc: BaseException) -> str:
    """A read/write failure on an established connection, in Go's words."""
    if isinstance(exc, asyncio.IncompleteReadError) or isinstance(exc, EOFError):
        return "EOF"
    if isinstance(exc, TimeoutError):
        what = "i/o timeout"
    elif isinstance(exc, BrokenPipeError):
        what = f"{op}: broken pipe"
    elif isinstance(exc, ConnectionResetError):
        what = f"{op}: connection reset by peer"
    elif isinstance(exc, OSError) and exc.strerror:
        what = f"{op}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    else:
        what = f"{op}: {exc or type(exc).__name__}"
    return f"{op} tcp {local}->{remote}: {what}"


class _Blocking:
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


class _Connection:
    __slots__ = ("reader", "writer", "address", "local", "remote", "lost", "write_failed", "watcher",
                 "healthy_timer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str) -> None:
        self.reader = reader
        self.writer = writer
        self.address = address
        self.local = _sockaddr(writer.get_extra_info("sockname"))
        self.remote = _sockaddr(writer.get_extra_info("peername"))
        self.lost: str | None = None
        # frames were handed to this connection and the write failed: they are
        # lost, so the loss is a failed RPC even if nothing else is queued
        self.write_failed = False
        self.watcher: asyncio.Task | None = None
        self.healthy_timer: asyncio.TimerHandle | None = None


class _Channel:
    """One outbound connection to one peer for one kind of traffic: a
    bounded frame queue drained by a single long-lived writer task."""

    def __init__(self, transport: "TcpTransport", peer_id: str, kind: str, address: str) -> None:
        self.t = transport
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
        self.rounds = FailureLogRounds(transport.log_interval)
        self.conn: _Connection | None = None
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
            if not tr.is_closing() and tr.get_write_buffer_size() < _WRITE_HIGH_WATER:
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
        t = self.t
        while len(q) > 1 and (len(q) > t.max_queue_frames or self.queued_bytes > t.max_queue_bytes):
            # The oldest frames are the stalest; Raft resends what matters.
            self.queued_bytes -= len(q.popleft())
            self.dropped += 1
        if self.task is None:
            self.task = t._loop.create_task(self._run(), name=f"raftkv-send-{self.kind}-{self.peer_id}")
        self.wakeup.set()

    async def _run(self) -> None:
        try:
            await self._send_loop()
        except Exception as e:
            # A bug, not a network fault. Let the next send start afresh
            # rather than leave this peer silently unreachable.
            self.t._log("ERROR", NET_LOGGER, "send loop failed",
                        [("peer", self.peer_id), ("error", f"{type(e).__name__}: {e}")])
            self._drop_connection()
            self.task = None

    async def _send_loop(self) -> None:
        t = self.t
        loop = t._loop
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
                    reader, writer = await t._dial(address)
                except Exception as e:
                    self._failed(dial_error_text(address, e))
                    continue
                self.conn = conn = _Connection(reader, writer, address)
                conn.watcher = loop.create_task(self._watch(conn))
                conn.healthy_timer = loop.call_later(t.backoff_cap, self._healthy, conn)
            conn = self.conn
            frames = self.queue
            self.queue = deque()
            self.queued_bytes = 0
            try:
                conn.writer.write(b"".join(frames))
                async with asyncio.timeout(t.io_timeout):
                    await conn.writer.drain()
                self.sent_frames += len(frames)
            except Exception as e:  # whatever broke, this connection is done
                if conn.lost is None:
                    conn.lost = io_error_text("write", conn.local, conn.remote, e)
                conn.write_failed = True

    async def _watch(self, conn: _Connection) -> None:
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

    def _healthy(self, conn: _Connection) -> None:
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
        now = t._loop.time()
        self.failures += 1
        backoff = backoff_delay(self.failures, t.backoff_base, t.backoff_cap)
        self.retry_at = now + backoff
        report = failure_report(self.kind, self.last, self.peer_id, self.address,
                                t._describe(self.peer_id), backoff, error)
        what = APPEND if self.kind == APPEND else type(self.last)
        if report is None or not self.rounds.admit(what, now):
            return
        level, message, fields = report
        t._log(level, RAFT_LOGGER, message, fields)

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


class _SnapshotFailure(Exception):
    """A snapshot stream failed; the message is what gets logged."""


def _tls_error(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ..." without "(_ssl.c:1006)"
        text = str(e.args[1]) if len(e.args) > 1 else str(e)
        return text.rsplit(" (_ssl.c:", 1)[0]
    if isinstance(e, TimeoutError):
        return "handshake timed out"
    return str(e) or type(e).__name__


class _TlsListener:
    """The Raft port's listener with TLS: a plain accept loop that hands
    each socket to ``TcpTransport._tls_accept``. asyncio's TLS server
    (``start_server(ssl=...)``) would drop a failed handshake without a
    word; here it is ours to log. Quacks like the ``asyncio.Server`` it
    replaces (``sockets``, ``close``, ``wait_closed``)."""

    def __init__(self, owner: "TcpTransport") -> None:
        self.owner = owner
        self.sockets: list[socket.socket] = []
        self._accepting: asyncio.Task | None = None

    def listen(self, host: str, port: int) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
        sock.setblocking(False)
        self.sockets = [sock]
        self._accepting = self.owner._loop.create_task(self._accept(sock))

    async def _accept(self, sock: socket.socket) -> None:
        owner, loop = self.owner, self.owner._loop
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError:
                if owner._closed:
                    return
                await asyncio.sleep(0.1)  # out of file descriptors, say: try again shortly
                continue
            if owner._closed:
                conn.close()
                continue
            if len(owner._handshakes) >= owner.max_connections:
                # before the TLS handshake: a flood must not cost us its CPU
                conn.close()
                owner._refuse_over_limit(_sockaddr(peer))
                continue
            task = loop.create_task(owner._tls_accept(conn))
            owner._handshakes.add(task)
            task.add_done_callback(owner._handshakes.discard)

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting


class TcpTransport:
    """See the module docstring.

    Callbacks run on the event loop thread, except the blocking file calls:
    ``read`` of the object ``snapshot_source(meta)`` returns and ``write`` /
    ``close`` of the writer ``snapshot_sink(from_id, meta)`` returns run in a
    worker thread, one call at a time per snapshot. A nonzero ``meta.size``
    must equal the number of bytes the source yields: the receiver rejects a
    stream of any other length (``failed to receive whole snapshot``)."""

    def __init__(
        self,
        node_id: str,
        bind_host: str,
        bind_port: int,
        handler: Handler,
        log: LogFn | None = None,
        describe_peer: Callable[[str], str] | None = None,
        snapshot_source: Callable[[SnapshotMeta], Any] | None = None,
        snapshot_sink: Callable[[str, SnapshotMeta], SnapshotWriter] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        *,
        on_snapshot_failed: Callable[[str], None] | None = None,
        authenticate: Any = None,
        faults: FaultInjector | None = None,
        advertise: str | None = None,
        max_queue_frames: int = 1024,
        max_queue_bytes: int = 64 * 1024 * 1024,
        snapshot_chunk_size: int = SNAPSHOT_CHUNK_SIZE,
        dial_timeout: float = 5.0,
        io_timeout: float = 10.0,
        snapshot_ack_timeout: float = 120.0,
        idle_timeout: float = 60.0,
        max_connections: int = 256,
        stranger_snapshot_after: float = 1.0,
        max_held: int | None = None,
        backoff_base: float = 0.010,
        backoff_cap: float = 0.5,
        log_interval: float = 5.0,
        server_ssl: "ssl.SSLContext | None" = None,
        client_ssl: "ssl.SSLContext | None" = None,
    ) -> None:
        if isinstance(authenticate, (bytes, str)):
            authenticate = ClusterKeyAuth(authenticate)
        if authenticate is not None and not isinstance(authenticate, ClusterKeyAuth):
            # Refuse rather than ignore: a cluster that believes it is
            # protected by a key must not silently run open.
            raise NotImplementedError(f"no authentication of kind {type(authenticate).__name__}: "
                                      "pass the cluster key (bytes/str) or a ClusterKeyAuth")
        self.auth: ClusterKeyAuth | None = authenticate
        if snapshot_chunk_size + 64 > max_frame:
            raise ValueError("snapshot_chunk_size must leave room within max_frame")
        self.node_id = node_id
        self.bind_host = bind_host
        self.bind_port = bind_port
        self.handler = handler
        self._log: LogFn = log or _no_log
        self.describe_peer = describe_peer
        self.snapshot_source = snapshot_source
        self.snapshot_sink = snapshot_sink
        self.on_snapshot_failed = on_snapshot_failed
        self.max_frame = max_frame
        self.advertise = advertise
        self.max_queue_frames = max_queue_frames
        self.max_queue_bytes = max_queue_bytes
        self.snapshot_chunk_size = snapshot_chunk_size
        self.dial_timeout = dial_timeout
        self.io_timeout = io_timeout
        self.snapshot_ack_timeout = snapshot_ack_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.stranger_snapshot_after = stranger_snapshot_after
        # One leader's batch and a snapshot chunk are what members send at once;
        # room for a few of each.
        self.max_held = 4 * max_frame if max_held is None else max_held
        self._held = 0
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.log_interval = log_interval
        self.faults = faults
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self._handshakes: set[asyncio.Task] = set()

        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._bound: str | None = None
        self._closed = False
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._inbound: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._snapshot_sends: dict[str, asyncio.Task] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._dropped_closed = 0
        self._over_limit = OverLimitLines(log_interval)
        self._members: frozenset[str] = frozenset()
        self._member_heard_at = float("-inf")
        self._strangers = OverLimitLines(log_interval)  # snapshot streams refused

    # --- lifecycle ---------------------------------------------------------

    @property
    def address(self) -> str:
        """The "host:port" peers should dial: the advertised address if set,
        else the one actually bound (meaningful after ``start()``)."""
        if self.advertise:
            return self.advertise
        return self._bound or join_host_port(self.bind_host, self.bind_port)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.server_ssl is None:
            self._server = await asyncio.start_server(self._serve, self.bind_host, self.bind_port,
                                                      limit=_READ_SIZE)
        else:
            self._server = _TlsListener(self)
            self._server.listen(self.bind_host, self.bind_port)
        sockname = self._server.sockets[0].getsockname()
        self._bound = join_host_port(self.bind_host, sockname[1])

    async def close(self) -> None:
        """Stop listening and close every connection; pending snapshot
        streams are abandoned (their sinks cancelled). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._handshakes):
            task.cancel()
        sends = list(self._snapshot_sends.values())
        for task in sends:
            task.cancel()
        # Inbound handlers are not cancelled: asyncio.streams (3.11) reports a
        # cancelled connection callback as an error. Aborting the socket ends
        # their read loop with EOF instead.
        inbound = list(self._inbound)
        for writer in self._inbound.values():
            writer.transport.abort()
        await asyncio.gather(*(ch.close() for ch in self._channels.values()), return_exceptions=True)
        await asyncio.gather(*sends, return_exceptions=True)
        if inbound:
            _, stuck = await asyncio.wait(inbound, timeout=self.io_timeout)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._log("DEBUG", NET_LOGGER, "stream layer is closed", [])

    # --- sending -----------------------------------------------------------

    def send(self, to_id: str, address: str, message: object) -> None:
        """Queue ``message`` for ``to_id`` at ``address``; never blocks and
        never raises for network trouble (delivery is best effort)."""
        if self._closed:
            self._dropped_closed += 1
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        faults = self.faults
        if faults is not None and faults.rules:
            drop, delay = faults.verdict(to_id, "out")
            if drop:
                if type(message) is InstallSnapshot and self.on_snapshot_failed is not None:
                    # as if the stream had failed; the core offers it again
                    self._loop.call_later(0.2, self._snapshot_dropped, to_id)
                return
            if delay:
                self._loop.call_later(delay, self._send_now, to_id, address, message)
                return
        self._send_now(to_id, address, message)

    def _snapshot_dropped(self, to_id: str) -> None:
        if not self._closed and self.on_snapshot_failed is not None:
            self.on_snapshot_failed(to_id)

    def _send_now(self, to_id: str, address: str, message: object) -> None:
        if self._closed:
            self._dropped_closed += 1
            return
        if type(message) is InstallSnapshot:
            self._start_snapshot(to_id, address, message)
            return
        try:
            frame = encode(message)
            if len(frame) - 4 > self.max_frame:
                raise CodecError(f"frame of {len(frame) - 4} bytes exceeds the limit of {self.max_frame}")
        except CodecError as e:
            self._log("ERROR", NET_LOGGER, "failed to encode outgoing command",
                      [("peer", to_id), ("error", str(e))])
            return
        kind = channel_for(message)
        channel = self._channels.get((to_id, kind))
        if channel is None:
            channel = self._channels[(to_id, kind)] = _Channel(self, to_id, kind, address)
        if kind is HEARTBEAT:
            channel.last = message  # small messages only: never a batch of entries
        channel.enqueue(frame, address)

    def learn_configuration(self, configuration) -> None:
        """The members, whose snapshot streams are taken (every raftkv frame
        names its sender's id, so there are no addresses to learn)."""
        self._members = frozenset(server.id for server in configuration.servers)

    async def disconnect(self, peer_id: str) -> None:
        """Forget a peer (e.g. removed from the configuration): close its
        channels, drop what is queued for it and abandon a snapshot stream."""
        task = self._snapshot_sends.pop(peer_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
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

    def _describe(self, peer_id: str) -> object:
        if self.describe_peer is not None:
            try:
                return self.describe_peer(peer_id)
            except Exception:
                pass
        return peer_id

    async def _dial(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = split_host_port(address)
        async with asyncio.timeout(self.dial_timeout):
            if self.client_ssl is None:
                reader, writer = await asyncio.open_connection(host, port, limit=_READ_SIZE)
            else:
                reader, writer = await asyncio.open_connection(host, port, limit=_READ_SIZE,
                                                               ssl=self.client_ssl, server_hostname=host)
        try:
            _set_nodelay(writer)
            writer.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
            await self._handshake_out(reader, writer)
        except BaseException:
            writer.transport.abort()
            raise
        return reader, writer

    async def _handshake_out(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The caller's side of admission; with a cluster key, the challenge
        # of transport/auth.py is answered here, before any RPC is sent.
        writer.write(encode(hello(self.node_id, self.address)))
        auth = self.auth
        if auth is None:
            return
        try:
            async with asyncio.timeout(self.dial_timeout):
                challenge = await read_frame(reader, _HELLO_MAX_FRAME)
                if type(challenge) is not AuthChallenge or len(challenge.nonce) != NONCE_SIZE:
                    got = "EOF" if challenge is None else type(challenge).__name__
                    raise AuthError(f"expected a cluster key challenge, got {got} "
                                    "(does the peer run with the same RAFT_CLUSTER_KEY?)")
                mine = auth.nonce()
                writer.write(encode(AuthProof(auth.caller_proof(challenge.nonce, self.node_id), mine)))
                answer = await read_frame(reader, _HELLO_MAX_FRAME)
                if type(answer) is not AuthProof:
                    got = "EOF" if answer is None else type(answer).__name__
                    raise AuthError(f"the peer refused our cluster key proof ({got})")
                auth.check_acceptor(mine, challenge.nonce, answer.mac)
        except TimeoutError:
            raise AuthError("i/o timeout waiting for the cluster key challenge "
                            "(does the peer run with RAFT_CLUSTER_KEY?)") from None
        except CodecError as e:
            raise AuthError(f"cluster key handshake failed: {e}") from None

    # --- receiving ---------------------------------------------------------

    async def _handshake_in(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Hello | None:
        """Admit a connection: its first frame must be a valid Hello. Returns
        None if the caller hung up without a word. A cluster-key challenge
        would be sent and checked here, before the Hello is trusted."""
        try:
            async with asyncio.timeout(self.io_timeout):
                msg = await read_frame(reader, _HELLO_MAX_FRAME)
        except TimeoutError:
            raise CodecError("i/o timeout waiting for Hello") from None
        if msg is None:
            return None
        if type(msg) is not Hello:
            raise CodecError(f"expected Hello as the first frame, got {type(msg).__name__}")
        if msg.magic != MAGIC:
            raise CodecError(f"bad magic {msg.magic!r} in Hello")
        if msg.version != VERSION:
            raise CodecError(f"unsupported protocol version {msg.version} (want {VERSION})")
        auth = self.auth
        if auth is not None:
            nonce = auth.nonce()
            writer.write(encode(AuthChallenge(nonce)))
            try:
                async with asyncio.timeout(self.io_timeout):
                    proof = await read_frame(reader, _HELLO_MAX_FRAME)
            except TimeoutError:
                raise AuthError(f"{msg.node_id}: i/o timeout waiting for the cluster key proof") from None
            except CodecError as e:
                raise AuthError(f"{msg.node_id}: no valid cluster key proof ({e})") from None
            if type(proof) is not AuthProof or len(proof.nonce) != NONCE_SIZE:
                got = "EOF" if proof is None else type(proof).__name__
                raise AuthError(f"{msg.node_id}: expected a cluster key proof, got {got} "
                                "(the caller has no RAFT_CLUSTER_KEY?)")
            try:
                auth.check_caller(nonce, msg.node_id, proof.mac)
            except AuthError as e:
                raise AuthError(f"{msg.node_id}: {e}") from None
            writer.write(encode(AuthProof(auth.acceptor_proof(proof.nonce, nonce), b"")))
        return msg

    async def _tls_accept(self, conn: socket.socket) -> None:
        """The TLS handshake of an accepted connection, then ``_serve``. A
        caller without a certificate from the CA (or with none at all) fails
        here and is logged as ``refused connection``."""
        try:
            remote = _sockaddr(conn.getpeername())
        except OSError:
            conn.close()
            return
        loop = self._loop
        reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
        try:
            transport, protocol = await loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), conn,
                ssl=self.server_ssl, ssl_handshake_timeout=self.io_timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, ssl.SSLError, TimeoutError) as e:
            conn.close()
            if not self._closed:
                self._log("ERROR", NET_LOGGER, "refused connection",
                          [("remote-address", remote), ("error", f"tls: {_tls_error(e)}")])
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._serve(reader, writer)

    @property
    def refused_connections(self) -> int:
        """Connections closed at once for being over ``max_connections``."""
        return self._over_limit.refused

    def _refuse_over_limit(self, remote: str) -> None:
        refused = self._over_limit.refuse(self._loop.time())
        if refused is not None:
            self._log("WARN", NET_LOGGER, OVER_LIMIT_MESSAGE, over_limit_fields(self.max_connections, remote, refused))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closed:
            writer.transport.abort()
            return
        local = _sockaddr(writer.get_extra_info("sockname"))
        remote = _sockaddr(writer.get_extra_info("peername"))
        if len(self._inbound) >= self.max_connections:
            writer.transport.abort()
            self._refuse_over_limit(remote)
            return
        self._inbound[task] = writer
        self._log("DEBUG", NET_LOGGER, "accepted connection",
                  [("local-address", local), ("remote-address", remote)])
        _set_nodelay(writer)
        receiver: _SnapshotReceiver | None = None
        from_id = "?"
        decoder = FrameDecoder(self.max_frame)
        marked = -1  # see below
        held = 0     # bytes of a large incomplete frame, counted in self._held
        try:
            peer = await self._handshake_in(reader, writer)
            if peer is None:
                return
            from_id = peer.node_id
            handler = self.handler
            loop = self._loop
            # Every read has a deadline. With nothing pending, the peer may
            # be quiet for idle_timeout (a leader's append channel in a
            # quiet cluster); the dialer redials when it next has something
            # to say. Once a frame has begun, or a snapshot is streaming, the
            # next complete frame is due within io_timeout: a peer cannot
            # hold the connection, and its buffer, with a frame it never
            # finishes.
            frames = 0        # complete frames read
            marked = -1       # the value of ``frames`` when frame_due was set
            frame_due = 0.0
            async with asyncio.timeout(None) as deadline:
                while True:
                    if decoder.buffered or receiver is not None:
                        if marked != frames:
                            marked, frame_due = frames, loop.time() + self.io_timeout
                        deadline.reschedule(frame_due)
                    else:
                        marked = -1
                        deadline.reschedule(loop.time() + self.idle_timeout)
                    data = await reader.read(_READ_SIZE)
                    deadline.reschedule(None)
                    if not data:
                        decoder.eof()
                        if receiver is not None:
                            receiver.fail("failed to copy snapshot", "unexpected EOF")
                        return
                    decoder.push(data)
                    while (msg := decoder.pop()) is not None:
                        frames += 1
                        kind = type(msg)
                        faults = self.faults
                        if faults is not None and faults.rules and receiver is None:
                            drop, delay = faults.verdict(from_id, "in")
                            if drop:
                                if kind is InstallSnapshot:
                                    return  # refuse the stream; the sender retries later
                                continue
                            if delay and kind is not InstallSnapshot:
                                self._loop.call_later(delay, self._deliver_late, from_id, msg)
                                continue
                        if receiver is not None:
                            if kind is not SnapshotChunk:
                                raise CodecError(f"expected SnapshotChunk, got {kind.__name__}")
                            if await receiver.chunk(msg):
                                receiver = None
                        elif kind is InstallSnapshot:
                            self._admit_snapshot(from_id, remote, writer)
                            receiver = _SnapshotReceiver(self, from_id, msg, writer)
                            receiver.open()
                        elif kind in _CONTROL_FRAMES:
                            raise CodecError(f"unexpected {kind.__name__} frame")
                        else:
                            if from_id in self._members:
                                self._member_heard_at = loop.time()
                            try:
                                handler(from_id, msg)
                            except Exception as e:
                                self._log("ERROR", NET_LOGGER, "failed to handle incoming command",
                                          [("error", f"{type(e).__name__}: {e}")])
                    partial = decoder.buffered
                    if partial > SMALL_BODY or held:
                        held = self._hold(held, partial if partial > SMALL_BODY else 0)
        except TimeoutError:
            if marked < 0:
                self._log("DEBUG", NET_LOGGER, "closing idle connection",
                          [("node-id", from_id), ("remote-address", remote),
                           ("idle", timedelta(seconds=self.idle_timeout))])
            else:
                pending = f"{decoder.buffered} bytes of an incomplete frame" if decoder.buffered \
                    else "a snapshot stream"
                self._log("ERROR", NET_LOGGER, "failed to decode incoming command",
                          [("error", f"i/o timeout: {pending} for {go_duration(int(self.io_timeout * 1e9))}"),
                           ("remote-address", remote)])
        except CodecError as e:
            self._log("ERROR", NET_LOGGER, "failed to decode incoming command", [("error", str(e))])
        except AuthError as e:
            self._log("ERROR", NET_LOGGER, "refused connection",
                      [("remote-address", remote), ("error", str(e))])
        except _SnapshotFailure:
            # Logged where it happened, and a SnapshotAck(False) is queued.
            # Closing now, with the sender's chunks still unread, would make
            # the kernel reset the connection and discard that answer; so
            # read and discard until the sender, having read it, hangs up.
            await self._linger(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the caller went away; it will redial if it cares
        finally:
            if receiver is not None:
                await receiver.abandon("connection closed")
            self._held -= held
            self._inbound.pop(task, None)
            if self._closed:
                writer.transport.abort()
            else:
                writer.close()  # flushes a pending SnapshotAck first

    def _hold(self, held: int, now: int) -> int:
        """A connection's large incomplete frame went from ``held`` to
        ``now`` bytes. Every connection may begin a frame of max_frame bytes;
        together they may hold max_held: a crowd of them each sending most
        of a frame must not add up to gigabytes. Small frames are not
        counted (at most SMALL_BODY per connection)."""
        total = self._held + now - held
        if now > held and total > self.max_held:
            raise CodecError(f"incomplete frames of all connections would hold {total} bytes, "
                             f"over the limit of {self.max_held}")
        self._held = total
        return now

    def _admit_snapshot(self, from_id: str, remote: str, writer: asyncio.StreamWriter) -> None:
        """Whether a snapshot stream from ``from_id`` may be stored. The sink
        publishes the snapshot on the volume before the core hears of it, so
        the core's rule for senders is applied here first: a stream from a
        server outside the configuration is refused while members are being
        heard from (a stranger's snapshot, stored, would be restored from at
        the next start). A node with no configuration yet, or cut off from
        every member it knows for ``stranger_snapshot_after`` (its
        configuration may be the stale one), takes it, as the core would."""
        members = self._members
        if not members or from_id in members:
            return
        if self._loop.time() - self._member_heard_at >= self.stranger_snapshot_after:
            return
        refused = self._strangers.refuse(self._loop.time())
        if refused is not None:
            self._log("WARN", NET_LOGGER, "refusing a snapshot from a server not in the configuration",
                      [("from", from_id), ("remote-address", remote), ("refused", refused)])
        with contextlib.suppress(Exception):
            writer.write(encode(SnapshotAck(False, f"{from_id} is not in the configuration")))
        raise _SnapshotFailure("snapshot from a stranger")

    def _deliver_late(self, from_id: str, msg: object) -> None:
        if self._closed:
            return
        try:
            self.handler(from_id, msg)
        except Exception as e:
            self._log("ERROR", NET_LOGGER, "failed to handle incoming command",
                      [("error", f"{type(e).__name__}: {e}")])

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.io_timeout):
                await writer.drain()
                while await reader.read(_READ_SIZE):
                    pass
        except (OSError, TimeoutError):
            pass

    def _offload(self) -> _Blocking:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="raftkv-snapshot")
        return _Blocking(self._executor)

    # --- snapshots ---------------------------------------------------------

    def _start_snapshot(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        running = self._snapshot_sends.get(to_id)
        if running is not None and not running.done():
            # One stream per peer; the core hears the outcome of the running
            # one and will offer again if it still needs to.
            self._log("DEBUG", NET_LOGGER, "snapshot transfer already in progress",
                      [("peer", to_id), ("id", message.meta.id)])
            return
        self._snapshot_sends[to_id] = self._loop.create_task(
            self._send_snapshot(to_id, address, message), name=f"raftkv-snapshot-{to_id}")

    async def _send_snapshot(self, to_id: str, address: str, message: InstallSnapshot) -> None:
        writer: asyncio.StreamWriter | None = None
        source: Any = None
        blocking = self._offload()
        try:
            if self.snapshot_source is None:
                raise _SnapshotFailure("no snapshot source configured")
            try:
                reader, writer = await self._dial(address)
            except Exception as e:
                raise _SnapshotFailure(dial_error_text(address, e)) from None
            try:
                source = self.snapshot_source(message.meta)
            except Exception as e:
                raise _SnapshotFailure(f"failed to open snapshot: {e}") from None
            try:
                await self._stream_snapshot(reader, writer, message, source, blocking)
            except (OSError, TimeoutError) as e:
                raise _SnapshotFailure(io_error_text(
                    "write", _sockaddr(writer.get_extra_info("sockname")),
                    _sockaddr(writer.get_extra_info("peername")), e)) from None
            except CodecError as e:
                raise _SnapshotFailure(str(e)) from None
        except _SnapshotFailure as e:
            self._log("ERROR", RAFT_LOGGER, "failed to send snapshot to",
                      [("peer", self._describe(to_id)), ("error", str(e))])
            if self.on_snapshot_failed is not None:
                try:
                    self.on_snapshot_failed(to_id)
                except Exception as cb_error:
                    self._log("ERROR", NET_LOGGER, "snapshot failure callback raised",
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
            if self._snapshot_sends.get(to_id) is asyncio.current_task():
                del self._snapshot_sends[to_id]

    async def _stream_snapshot(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               message: InstallSnapshot, source: Any, blocking: _Blocking) -> None:
        # Waiting for drain after each chunk is what bounds memory: at most
        # one chunk plus the socket's buffer is ever held here. The receiver
        # may give up early (its disk is full, say): its SnapshotAck can then
        # arrive mid-stream, so it is listened for from the start.
        ack_task = asyncio.ensure_future(read_frame(reader, _CONTROL_MAX_FRAME))
        try:
            writer.write(encode(dataclasses.replace(message, data=None)))
            size = self.snapshot_chunk_size
            while not ack_task.done():
                try:
                    chunk = await blocking.call(source.read, size)
                except Exception as e:
                    raise _SnapshotFailure(f"failed to read snapshot: {e}") from None
                if not chunk:
                    break
                writer.write(encode(SnapshotChunk(bytes(chunk), False)))
                async with asyncio.timeout(self.io_timeout):
                    await writer.drain()
            if not ack_task.done():
                writer.write(encode(SnapshotChunk(b"", True)))
                async with asyncio.timeout(self.io_timeout):
                    await writer.drain()
            try:
                async with asyncio.timeout(self.snapshot_ack_timeout):
                    ack = await ack_task
            except TimeoutError:
                raise _SnapshotFailure("i/o timeout waiting for the receiver") from None
        finally:
            if not ack_task.done():
                ack_task.cancel()
            elif not ack_task.cancelled():
                ack_task.exception()  # retrieved: it was handled (or superseded) above
        if ack is None:
            raise _SnapshotFailure("EOF")
        if type(ack) is not SnapshotAck:
            raise _SnapshotFailure(f"unexpected {type(ack).__name__} instead of SnapshotAck")
        if not ack.success:
            raise _SnapshotFailure(ack.error or "rejected by the receiver")


class _SnapshotReceiver:
    """The receiving end of one snapshot stream: chunks go to the sink in
    order; on the last one the node gets ``InstallSnapshot(data=handle)``."""

    def __init__(self, t: TcpTransport, from_id: str, header: InstallSnapshot, writer: asyncio.StreamWriter) -> None:
        self.t = t
        self.from_id = from_id
        self.header = header
        self.writer = writer
        self.sink: Any = None
        self.received = 0
        self.blocking = t._offload()

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
            self.t._log("ERROR", RAFT_LOGGER, "failed to receive whole snapshot",
                        [("received", f"{self.received} / {expected}")])
            self._nack(f"received {self.received} of {expected} bytes")
            raise _SnapshotFailure("short snapshot")
        try:
            handle = await self.blocking.call(self.sink.close)
        except Exception as e:
            await self._cancel()
            self.fail("failed to finalize snapshot", str(e))
        self.sink = None
        try:
            self.t.handler(self.from_id, dataclasses.replace(self.header, data=handle))
        except Exception as e:
            self.t._log("ERROR", NET_LOGGER, "failed to handle incoming command",
                        [("error", f"{type(e).__name__}: {e}")])
            self._nack(f"{type(e).__name__}: {e}")
            raise _SnapshotFailure("handler failed") from None
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
                self.t._log("ERROR", NET_LOGGER, "failed to cancel snapshot",
                            [("error", f"{type(e).__name__}: {e}")])

    def _nack(self, error: str) -> None:
        if len(error) > _ACK_ERROR_MAX:
            error = error[:_ACK_ERROR_MAX - 3] + "..."  # the sender refuses longer text (MAX_STR_LEN)
        try:
            self.writer.write(encode(SnapshotAck(False, error)))
        except Exception:
            pass

    def fail(self, message: str, error: str) -> None:
        self.t._log("ERROR", RAFT_LOGGER, message, [("error", error)])
        self._nack(error)
        raise _SnapshotFailure(message)
