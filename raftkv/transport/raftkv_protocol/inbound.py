"""The accepting side of the raftkv transport: connections in, messages to the handler.

Theory of operation
-------------------
A peer dials us for its own messages and we never write Raft traffic back on
its connection. :meth:`Acceptor.serve` runs one accepted connection: the
admission of :mod:`.handshake` (a ``Hello``, and the cluster key challenge),
then a read loop that decodes frames (:mod:`raftkv.transport.codec`) and hands
each message to ``handler(from_id, message)`` synchronously, in arrival order,
or to the snapshot stream it belongs to (:mod:`.snapshots`).

A frame that does not decode (CodecError: malformed, oversized, truncated,
over one of the codec's unpacking limits, or a first frame that is not a
valid Hello) is logged as ``failed to decode incoming command`` and closes
that connection only; a caller refused by the cluster key is logged as
``refused connection``.

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
worth): a crowd each sending most of a frame cannot add up to gigabytes.
Beyond ``max_connections`` accepted connections (TLS handshakes included) a
new one is closed at once, and a WARN ``too many connections, closing new
ones`` says so at most once per ``log_interval`` with the number refused
since the last line.

A snapshot stream is stored before the core hears of it (the sink publishes
it on the volume), so the core's rule for senders is applied here first: a
stream from a server outside the configuration (``learn_configuration``) is
refused while members are being heard from (``SnapshotAck(False)``, a WARN
``refusing a snapshot from a server not in the configuration``).

Fault injection: with rules in the transport's ``faults``, each message
received is first offered to it (direction ``in``) and may be dropped or
handed over later; a dropped snapshot stream is refused by closing its
connection (the sender retries once healed).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Protocol

from raftkv.config.textforms import go_duration
from raftkv.raft.messages import InstallSnapshot

from ..codec import (
    SMALL_BODY,
    AuthChallenge,
    AuthProof,
    CodecError,
    FrameDecoder,
    Hello,
    SnapshotAck,
    SnapshotChunk,
    encode,
)
from ..contract import NET_LOGGER, Handler
from ..gotext import OVER_LIMIT_MESSAGE, OverLimitLines, over_limit_fields
from ..options import TransportOptions
from ..stream import READ_SIZE, linger, set_nodelay, sockaddr
from .auth import AuthError, ClusterKeyAuth
from .handshake import handshake_in
from .snapshots import SnapshotFailure, SnapshotReceiver, SnapshotStreams

__all__ = ["Acceptor", "AcceptorOwner"]

_CONTROL_FRAMES = frozenset({Hello, SnapshotChunk, SnapshotAck, AuthChallenge, AuthProof})


class AcceptorOwner(Protocol):
    """What the acceptor needs of its transport (TcpTransport)."""

    loop: asyncio.AbstractEventLoop
    closed: bool
    handler: Handler
    auth: ClusterKeyAuth | None
    options: TransportOptions
    snapshots: SnapshotStreams

    def log(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None: ...


class Acceptor:
    """The connections a transport accepted, and what they may hold."""

    def __init__(self, transport: AcceptorOwner) -> None:
        self.t = transport
        self.options = transport.options
        self.connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self.held = 0                # bytes of large incomplete frames, all connections
        self.over_limit = OverLimitLines(self.options.log_interval)
        self.members: frozenset[str] = frozenset()
        self.member_heard_at = float("-inf")
        self.strangers = OverLimitLines(self.options.log_interval)  # snapshot streams refused

    def learn_configuration(self, configuration) -> None:
        self.members = frozenset(server.id for server in configuration.servers)

    def abort_all(self) -> list[asyncio.Task]:
        """Abort every accepted connection; their tasks, to wait for.
        The tasks are not cancelled: asyncio.streams (3.11) reports a
        cancelled connection callback as an error. Aborting the socket ends
        their read loop with EOF instead."""
        tasks = list(self.connections)
        for writer in self.connections.values():
            writer.transport.abort()
        return tasks

    def refuse_over_limit(self, remote: str) -> None:
        """A connection beyond ``max_connections`` was closed at once."""
        t = self.t
        refused = self.over_limit.refuse(t.loop.time())
        if refused is not None:
            t.log("WARN", NET_LOGGER, OVER_LIMIT_MESSAGE,
                  over_limit_fields(self.options.max_connections, remote, refused))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run one accepted connection until it ends (see the module docstring)."""
        t, o = self.t, self.options
        task = asyncio.current_task()
        if t.closed:
            writer.transport.abort()
            return
        local = sockaddr(writer.get_extra_info("sockname"))
        remote = sockaddr(writer.get_extra_info("peername"))
        if len(self.connections) >= o.max_connections:
            writer.transport.abort()
            self.refuse_over_limit(remote)
            return
        self.connections[task] = writer
        t.log("DEBUG", NET_LOGGER, "accepted connection",
              [("local-address", local), ("remote-address", remote)])
        set_nodelay(writer)
        receiver: SnapshotReceiver | None = None
        from_id = "?"
        decoder = FrameDecoder(o.max_frame)
        marked = -1  # see below
        held = 0     # bytes of a large incomplete frame, counted in self.held
        try:
            peer = await handshake_in(reader, writer, t.auth, o.io_timeout)
            if peer is None:
                return
            from_id = peer.node_id
            handler = t.handler
            loop = t.loop
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
                            marked, frame_due = frames, loop.time() + o.io_timeout
                        deadline.reschedule(frame_due)
                    else:
                        marked = -1
                        deadline.reschedule(loop.time() + o.idle_timeout)
                    data = await reader.read(READ_SIZE)
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
                        faults = o.faults
                        if faults is not None and faults.rules and receiver is None:
                            drop, delay = faults.verdict(from_id, "in")
                            if drop:
                                if kind is InstallSnapshot:
                                    return  # refuse the stream; the sender retries later
                                continue
                            if delay and kind is not InstallSnapshot:
                                loop.call_later(delay, self._deliver_late, from_id, msg)
                                continue
                        if receiver is not None:
                            if kind is not SnapshotChunk:
                                raise CodecError(f"expected SnapshotChunk, got {kind.__name__}")
                            if await receiver.chunk(msg):
                                receiver = None
                        elif kind is InstallSnapshot:
                            self._admit_snapshot(from_id, remote, writer)
                            receiver = t.snapshots.receive(from_id, msg, writer)
                        elif kind in _CONTROL_FRAMES:
                            raise CodecError(f"unexpected {kind.__name__} frame")
                        else:
                            if from_id in self.members:
                                self.member_heard_at = loop.time()
                            try:
                                handler(from_id, msg)
                            except Exception as e:
                                t.log("ERROR", NET_LOGGER, "failed to handle incoming command",
                                      [("error", f"{type(e).__name__}: {e}")])
                    partial = decoder.buffered
                    if partial > SMALL_BODY or held:
                        held = self._hold(held, partial if partial > SMALL_BODY else 0)
        except TimeoutError:
            if marked < 0:
                t.log("DEBUG", NET_LOGGER, "closing idle connection",
                      [("node-id", from_id), ("remote-address", remote),
                       ("idle", timedelta(seconds=o.idle_timeout))])
            else:
                pending = f"{decoder.buffered} bytes of an incomplete frame" if decoder.buffered \
                    else "a snapshot stream"
                t.log("ERROR", NET_LOGGER, "failed to decode incoming command",
                      [("error", f"i/o timeout: {pending} for {go_duration(int(o.io_timeout * 1e9))}"),
                       ("remote-address", remote)])
        except CodecError as e:
            t.log("ERROR", NET_LOGGER, "failed to decode incoming command", [("error", str(e))])
        except AuthError as e:
            t.log("ERROR", NET_LOGGER, "refused connection",
                  [("remote-address", remote), ("error", str(e))])
        except SnapshotFailure:
            # Logged where it happened, and a SnapshotAck(False) is queued.
            # Closing now, with the sender's chunks still unread, would make
            # the kernel reset the connection and discard that answer; so
            # read and discard until the sender, having read it, hangs up.
            await linger(reader, writer, o.io_timeout)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the caller went away; it will redial if it cares
        finally:
            if receiver is not None:
                await receiver.abandon("connection closed")
            self.held -= held
            self.connections.pop(task, None)
            if t.closed:
                writer.transport.abort()
            else:
                writer.close()  # flushes a pending SnapshotAck first

    def _hold(self, held: int, now: int) -> int:
        """A connection's large incomplete frame went from ``held`` to
        ``now`` bytes. Every connection may begin a frame of max_frame bytes;
        together they may hold max_held: a crowd of them each sending most
        of a frame must not add up to gigabytes. Small frames are not
        counted (at most SMALL_BODY per connection)."""
        total = self.held + now - held
        if now > held and total > self.options.max_held:
            raise CodecError(f"incomplete frames of all connections would hold {total} bytes, "
                             f"over the limit of {self.options.max_held}")
        self.held = total
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
        t = self.t
        members = self.members
        if not members or from_id in members:
            return
        if t.loop.time() - self.member_heard_at >= self.options.stranger_snapshot_after:
            return
        refused = self.strangers.refuse(t.loop.time())
        if refused is not None:
            t.log("WARN", NET_LOGGER, "refusing a snapshot from a server not in the configuration",
                  [("from", from_id), ("remote-address", remote), ("refused", refused)])
        with contextlib.suppress(Exception):
            writer.write(encode(SnapshotAck(False, f"{from_id} is not in the configuration")))
        raise SnapshotFailure("snapshot from a stranger")

    def _deliver_late(self, from_id: str, msg: object) -> None:
        t = self.t
        if t.closed:
            return
        try:
            t.handler(from_id, msg)
        except Exception as e:
            t.log("ERROR", NET_LOGGER, "failed to handle incoming command",
                  [("error", f"{type(e).__name__}: {e}")])
