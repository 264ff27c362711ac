"""The local link between a node's Raft process and its HTTP workers.

A worker (:mod:`raftkv.http.workers.worker`) connects to the Raft process over a
unix socket and sends msgpack arrays, answered by request id, any number in
flight (pipelined):

    ["h", pid]            hello: the worker is serving; its pid for /status
    ["r", id, lease]      a read index: answered once the leader has confirmed
                          its leadership (``Node.read_barrier_nowait``; with
                          ``lease`` true, at once while it holds a read lease,
                          which this renews); one request stands for every
                          read of its kind the worker has waiting
    ["p", id, command]    propose a state-machine command (``Node.propose_nowait``)

Answers are ``[id, True, result]`` or ``[id, False, error]``, where an error
is the request's exception as a map (its type, message and what it says
about the leader and the outcome) and becomes the same exception in the
worker. Unasked, the Raft process sends ``["s", applied_index, is_leader,
leader]`` whenever one of these changes (checked every few milliseconds and
on every role change), which is what a worker's stale reads and leadership
guess go by. The read lease itself is not sent: the workers read it from
a file the Raft process maps (:mod:`raftkv.http.workers.leaseboard`).

The link also says whether the other side lives: when the Raft process dies
the worker sees the socket close and stops serving, so it never answers a
linearizable read or a write without the Raft process behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable

import msgpack

from raftkv.node.errors import (
    ApplyTimeout,
    DiskFull,
    NotLeaderError,
    RejectReason,
    RequestError,
    ShuttingDown,
    StorageFailed,
)
from raftkv.observability import hclog

from ..api.handle import NodeHandle
from .leaseboard import LeaseBoard

link_log = hclog.get_logger("http.link")

__all__ = ["LinkClient", "LinkServer", "socket_path"]

HELLO = "h"
READ = "r"
PROPOSE = "p"
STATE = "s"
# How often the Raft process looks for a new applied index to announce.
ANNOUNCE_PERIOD = 0.005

_ERRORS = {cls.__name__: cls for cls in (RequestError, NotLeaderError, ApplyTimeout, ShuttingDown, StorageFailed,
                                         DiskFull)}


def socket_path(volume_dir: str, name: str) -> str:
    """Where a node's unix socket called ``name`` lives: in its volume, or in
    Linux's abstract namespace when that path is too long for a socket
    address (108 bytes)."""
    path = os.path.join(os.path.abspath(volume_dir), name)
    if len(path.encode()) < 100:
        return path
    return "\0raftkv-" + hashlib.sha256(path.encode()).hexdigest()[:24]


def remove_socket_file(path: str) -> None:
    if not path.startswith("\0"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _error_map(exc: RequestError) -> dict:
    return {"type": type(exc).__name__, "message": exc.message, "unknown": exc.unknown_outcome,
            "leader_id": exc.leader_id, "leader_address": exc.leader_address,
            "reason": exc.reason.value if exc.reason is not None else None}


def _error_of(data: dict) -> RequestError:
    cls = _ERRORS.get(data.get("type"), RequestError)
    reason = data.get("reason")
    try:
        reason = RejectReason(reason) if reason is not None else None
    except ValueError:
        reason = None
    return cls(data.get("message") or "request failed", bool(data.get("unknown")),
               data.get("leader_id"), data.get("leader_address"), reason)


class _Outbox:
    """Frames bound for one socket, written together once per turn of the
    event loop: under load one ``write`` syscall carries many answers."""

    __slots__ = ("frames", "loop", "on_flush", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                 on_flush: Callable[[], None] | None = None) -> None:
        self.loop = loop
        self.transport = transport
        self.frames: list[bytes] = []
        self.on_flush = on_flush  # called as the frames leave, before the write

    def put(self, message) -> None:
        if not self.frames:
            self.loop.call_soon(self.flush)
        self.frames.append(msgpack.packb(message, use_bin_type=True))

    def flush(self) -> None:
        if self.on_flush is not None:
            self.on_flush()
        frames, self.frames = self.frames, []
        if frames and not self.transport.is_closing():
            self.transport.write(b"".join(frames) if len(frames) > 1 else frames[0])


def _plain(result):
    """A state machine result as msgpack carries it (a CommandError as None:
    the HTTP answers do not show it)."""
    return result if result is None or isinstance(result, (bool, int, str)) else None


# --------------------------------------------------------------------------- Raft process side

class _ServerConnection(asyncio.Protocol):
    def __init__(self, server: "LinkServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 * 1024 * 1024)
        self.pid: int | None = None
        self.outbox: _Outbox | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.outbox = _Outbox(asyncio.get_running_loop(), transport)
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.server.connections.discard(self)

    def send(self, message) -> None:
        if self.transport is not None:
            self.outbox.put(message)

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        node = self.server.node
        for message in self.unpacker:
            kind = message[0]
            try:
                if kind == READ:
                    # every read in this burst joins the node's next ReadIndex request
                    waiting = node.read_barrier_nowait(lease=bool(message[2]) if len(message) > 2 else False)
                elif kind == PROPOSE:
                    waiting = node.propose_nowait(message[2])
                else:
                    if kind == HELLO:
                        self.pid = message[1]
                        self.send(self.server.state())
                    continue
            except RequestError as exc:  # not the leader: refused at once
                self.send([message[1], False, _error_map(exc)])
                continue
            waiting.add_done_callback(_Answer(self, message[1], kind))


class _Answer:
    """Sends the outcome of one worker's request back over the link."""

    __slots__ = ("connection", "request_id", "kind")

    def __init__(self, connection: _ServerConnection, request_id: int, kind: str) -> None:
        self.connection, self.request_id, self.kind = connection, request_id, kind

    def __call__(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            result = fut.result()
            if self.kind == PROPOSE:
                result = [result[0], _plain(result[1])]
            self.connection.send([self.request_id, True, result])
        elif isinstance(exc, RequestError):
            self.connection.send([self.request_id, False, _error_map(exc)])
        else:
            link_log.error("link request failed", error=f"{type(exc).__name__}: {exc}")
            self.connection.send([self.request_id, False, {"type": "RequestError",
                                                           "message": f"internal error: {exc}", "unknown": True}])


class LinkServer:
    """The Raft process's end: serves the workers' requests through the
    node's narrow handle and announces the applied index and leadership."""

    def __init__(self, node: NodeHandle, known_leader: Callable[[], dict | None],
                 lease_board: LeaseBoard | None = None, lease_duration: int = 0) -> None:
        self.node = node
        self.known_leader = known_leader
        self.connections: set[_ServerConnection] = set()
        self.server: asyncio.AbstractServer | None = None
        self._last_state = None
        self.lease_board = lease_board
        self.lease_duration = lease_duration

    async def start(self, path: str) -> None:
        board = self.lease_board
        if board is not None:
            self.node.lease_listener = lambda lease: board.publish(*lease, self.lease_duration)
            self.node.applied_listener = board.publish_applied
            board.publish_applied(self.node.applied_index)
        remove_socket_file(path)
        self.server = await self.node.loop.create_unix_server(lambda: _ServerConnection(self), path)
        self.node.spawn(self._announce(), "raftkv-link-announce")

    def pids(self) -> list[int]:
        """The pids of the workers that said hello."""
        return [c.pid for c in self.connections if c.pid is not None]

    def state(self) -> list:
        node = self.node
        return [STATE, node.applied_index, node.is_leader, self.known_leader()]

    async def _announce(self) -> None:
        while True:
            await self.node.wait_state_change(ANNOUNCE_PERIOD)
            if not self.connections:
                continue
            state = self.state()
            if state != self._last_state:
                self._last_state = state
                for connection in list(self.connections):
                    connection.send(state)

    def close(self) -> None:
        board, self.lease_board = self.lease_board, None
        if board is not None:
            self.node.lease_listener = self.node.applied_listener = None
            board.publish(0, 0, 0)
            board.close()
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()


# --------------------------------------------------------------------------- worker side

class _ClientConnection(asyncio.Protocol):
    def __init__(self, client: "LinkClient") -> None:
        self.client = client
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 * 1024 * 1024)

    def connection_made(self, transport) -> None:
        self.client.attach(transport)

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for message in self.unpacker:
            self.client.received(message)

    def connection_lost(self, exc) -> None:
        self.client.lost()


class LinkClient:
    """A worker's end of the link. Reads are batched: every read that
    arrives before the next frames leave shares one read-index request (a
    read must not share a request that was sent before it arrived: its read
    index is taken when the Raft process receives it)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.outbox: _Outbox | None = None
        self.closed: asyncio.Future | None = None
        self.applied_index = 0
        self.is_leader = False
        self.leader: dict | None = None
        self.state_seen = 0  # counts announcements, so a reader knows when to look again
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future] = {}
        self._read_batch: asyncio.Future | None = None  # asked for, not sent yet
        self._lease_batch: asyncio.Future | None = None  # the same, for lease reads

    async def connect(self, path: str) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        await loop.create_unix_connection(lambda: _ClientConnection(self), path)

    def attach(self, transport: asyncio.Transport) -> None:
        """Speak over ``transport`` from now on."""
        self._loop = asyncio.get_running_loop()
        self.transport = transport
        self.outbox = _Outbox(self._loop, transport, self.sent)

    def hello(self) -> None:
        """Tell the Raft process this worker is serving."""
        if self.transport is not None:
            self._send([HELLO, os.getpid()])

    @property
    def alive(self) -> bool:
        return self.transport is not None

    def _send(self, message) -> None:
        self.outbox.put(message)

    def _request(self, *message) -> asyncio.Future:
        if self.transport is None:
            raise ShuttingDown("the node's Raft process is gone", unknown_outcome=False)
        request_id = self._next_id
        self._next_id += 1
        fut = self._loop.create_future()
        self._pending[request_id] = fut
        self._send([message[0], request_id, *message[1:]])
        return fut

    def propose(self, command: bytes) -> asyncio.Future:
        """The future of ``[index, result]`` once the command is applied."""
        return self._request(PROPOSE, command)

    def read_index(self, *, lease: bool = False) -> asyncio.Future:
        """The future of a read index for a read arriving now (shared by
        the reads of its kind that arrive before the frames leave)."""
        batch = self._lease_batch if lease else self._read_batch
        if batch is None:
            batch = self._request(READ, lease)
            if lease:
                self._lease_batch = batch
            else:
                self._read_batch = batch
        return batch

    def sent(self) -> None:
        """The outbox's frames are leaving: a read from now on needs a new request."""
        self._read_batch = self._lease_batch = None

    def received(self, message) -> None:
        first = message[0]
        if first == STATE:
            _, self.applied_index, self.is_leader, self.leader = message
            self.state_seen += 1
            return
        fut = self._pending.pop(first, None)
        if fut is None or fut.done():
            return
        if message[1]:
            fut.set_result(message[2])
        else:
            fut.set_exception(_error_of(message[2]))

    def lost(self) -> None:
        self.transport = None
        self.is_leader = False
        gone = ShuttingDown("the node's Raft process is gone", unknown_outcome=True)
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(gone)
                fut.exception()  # a round nobody awaits any more must not warn
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
