"""An HTTP worker: one of the processes that share a node's public HTTP port
(``HTTP_WORKERS``), so that HTTP serving runs on more than one core.

``python -m raftkv.http.workers.worker SPEC`` (SPEC: JSON written by
:mod:`raftkv.http.workers.pool`, which starts and watches the workers). A worker

* binds the HTTP port with ``SO_REUSEPORT`` (the kernel spreads connections
  over the workers) and serves the route table's fast rows (``GET /get``
  and ``GET /set``, :mod:`raftkv.http.routes`) on the fast path
  (:mod:`raftkv.http.server.fastpath`) through the shared data plane
  (:mod:`raftkv.http.api.kv`), with a context (:class:`WorkerContext`) whose
  node is :class:`WorkerNode`;
* reads keys straight from the state machine's SQLite file, read-only
  (:class:`raftkv.statemachine.kvstore.KVReader`). A stale read is that alone.
  A linearizable read first gets a read index from the Raft process over the
  local link (:mod:`raftkv.http.workers.link`; one request for every read
  waiting in this worker, confirmed by one ReadIndex round), then waits until
  its own view of the file has applied that index. A lease read asks nothing
  while the lease board (:mod:`raftkv.http.workers.leaseboard`) shows a
  lease: a worker whose view of the file has reached the board's
  ``changed`` index (the last that changed keys, which covers every
  acknowledged write) serves it at once, and otherwise looks at the file
  afresh once for all the lease reads of one turn of the event loop; once
  half the lease is gone it also asks the Raft process for a lease read,
  which renews the lease, and without one it asks as a linearizable read
  does;
* sends writes to the Raft process over the link (pipelined, so group commit
  still batches them);
* relays everything else -- other routes, and reads and writes when the Raft
  process does not lead -- to the Raft process's internal HTTP listener
  (:mod:`raftkv.http.workers.proxy`), where the node's full aiohttp app forwards to
  the leader as usual.

A worker stops when the link closes: without the Raft process it cannot
confirm a read or commit a write, so it answers what is in flight with 503
and exits; the Raft process starts a fresh one when it comes back. It logs
only its own start, stop and errors; the Raft story is the Raft process's.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from raftkv.node.errors import ApplyTimeout, NotLeaderError, RequestError
from raftkv.observability import hclog
from raftkv.statemachine.kvstore import KVReader

from ..api.context import Call
from ..api.replies import Reply, error_reply
from ..routes import fast_routes
from ..server.fastpath import DEFAULT_WANTED_HEADERS, FastPath
from ..server.limits import HttpLimits, JsonErrorHandler, raise_open_files_limit
from .leaseboard import LeaseBoard
from .link import LinkClient
from .proxy import RaftProcessProxy

worker_log = hclog.get_logger("http.worker")

__all__ = ["WorkerContext", "WorkerNode", "main"]

# While a linearizable read waits for the file to show its read index.
_VIEW_POLL = 0.0005


class WorkerNode:
    """The node as a worker has it: a :class:`~raftkv.http.api.handle.KeyValueNode`
    that reads from the state machine's file and sends the rest over the link."""

    def __init__(self, node_id: str, link: LinkClient, reader: KVReader, apply_timeout: float,
                 lease_board: LeaseBoard | None = None) -> None:
        self.id = node_id
        self.link = link
        self.reader = reader
        self.apply_timeout = apply_timeout
        self.lease_board = lease_board
        self._lease_view: asyncio.Future | None = None  # the look at the file this turn's lease reads share
        self._lease_floor = 0
        self._renewing: asyncio.Future | None = None
        self._state_seen = -1
        self._wrote_index = 0  # this worker's latest write: its own reads see it
        self.loop = asyncio.get_running_loop()  # built inside the worker's loop
        self._visible: dict[asyncio.Future, asyncio.Future] = {}  # read batch -> seen in the file

    @property
    def is_leader(self) -> bool:
        return self.link.is_leader

    def get_local(self, key: str) -> str | None:
        reader = self.reader
        board = self.lease_board
        if board is not None:
            # the board says the keys changed past this view
            changed = board.applied_and_changed()[1] > reader.applied_index
        else:
            # the Raft process announced a change
            link = self.link
            changed = link.state_seen != self._state_seen
            self._state_seen = link.state_seen
        if changed or reader.applied_index < self._wrote_index:  # (or this worker wrote): look again
            reader.renew()
        return reader.get(key)

    async def read_barrier(self, *, lease: bool = False) -> int:
        # shielded: the future is shared by every read of its batch
        return await asyncio.shield(self.read_barrier_nowait(lease=lease))

    def leader_contact_age(self) -> int | None:
        return 0 if self.link.is_leader else None   # a worker runs beside the leader only

    def _lease_floor_now(self) -> int | None:
        """The lease's floor if the board shows a lease now, else None; asks
        for a renewal once half of the lease is gone."""
        board = self.lease_board
        held = board.read() if board is not None else None
        if held is None:
            return None
        until, floor, duration = held
        left = until - LeaseBoard.now()
        if left <= 0:
            return None
        if left < duration / 2:
            self._renew_lease()
        return floor

    def serve_under_lease(self) -> bool:
        """A lease read at once, with no look at the file: the board shows a
        lease, and this worker's view holds the keys and values as of the
        board's applied index (so every acknowledged write) and of the
        lease's floor: the view has reached the board's ``changed``, and the
        view or the board's applied index has reached the floor. Entries
        that change no key (the no-ops that renew the lease) need no new
        look. The read arrived before this check, and the check is the
        look's moment."""
        floor = self._lease_floor_now()
        board = self.lease_board
        if floor is None or board is None:
            return False
        return self._view_holds(board, floor)

    def _view_holds(self, board: LeaseBoard, floor: int) -> bool:
        """This worker's view holds the keys as of the board's applied index
        (it reached ``changed``) and as of ``floor``."""
        view = self.reader.applied_index
        applied, changed = board.applied_and_changed()
        return view >= changed and (view >= floor or applied >= floor)

    def read_barrier_nowait(self, *, lease: bool = False) -> asyncio.Future:
        """The future of a read index this worker's view of the file has
        reached, for a read arriving now: shared by the reads of one batch."""
        if lease:
            floor = self._lease_floor_now()
            if floor is not None:
                return self._view_under_lease(floor)
        if not self.link.is_leader:
            raise NotLeaderError("the Raft process does not lead")
        batch = self.link.read_index(lease=lease)
        visible = self._visible.get(batch)
        if visible is None:
            visible = self._visible[batch] = self.loop.create_future()
            batch.add_done_callback(functools.partial(self._index_known, visible))
        return visible

    def _view_under_lease(self, floor: int) -> asyncio.Future:
        view = self._lease_view
        if view is None:
            view = self._lease_view = self.loop.create_future()
            self._lease_floor = floor
            # after every read this turn of the loop took in: each of them
            # arrived before the file is looked at
            self.loop.call_soon(self._look_under_lease, view)
        else:
            self._lease_floor = max(self._lease_floor, floor)
        return view

    def _look_under_lease(self, view: asyncio.Future) -> None:
        self._lease_view = None
        board = self.lease_board
        assert board is not None  # only reads the board let in wait here
        reader = self.reader
        # Every write acknowledged before now is covered by the board's
        # ``changed``: a view that reached it holds them all, and only a view
        # short of it needs a new look at the file.
        if board.applied_and_changed()[1] > reader.applied_index:
            reader.renew()
        # That view serves a linearizable read (at this moment) if the lease
        # still holds after it was taken: no other leader can have committed
        # anything yet, however long this turn of the loop took.
        held = board.read()
        if held is not None and held[0] > LeaseBoard.now() and self._view_holds(board, self._lease_floor):
            if not view.done():
                view.set_result(reader.applied_index)
            return
        # the lease ended meanwhile, or a new leader's file is still short of
        # its predecessors' entries: the Raft process confirms these reads
        try:
            batch = self.link.read_index(lease=True)
        except RequestError as exc:
            if not view.done():
                view.set_exception(exc)
            return
        batch.add_done_callback(functools.partial(self._index_known, view))

    def _renew_lease(self) -> None:
        """Ask the Raft process for one lease read, whose core renews the
        lease; its answer is not needed."""
        if (self._renewing is None or self._renewing.done()) and self.link.is_leader:
            self._renewing = self.link.read_index(lease=True)
            self._renewing.add_done_callback(_ignore_outcome)

    def _index_known(self, visible: asyncio.Future, batch: asyncio.Future) -> None:
        self._visible.pop(batch, None)
        if batch.cancelled():
            visible.cancel()
        elif batch.exception() is not None:
            visible.set_exception(batch.exception())
        else:
            self._await_view(visible, batch.result(), self.loop.time() + self.apply_timeout)

    def _await_view(self, visible: asyncio.Future, index: int, deadline: float) -> None:
        # The Raft process answers once the entries up to the read index are
        # applied and committed to the file, so waiting here is a rare race
        # with the commit: poll briefly.
        if visible.done():
            return
        reader = self.reader
        if reader.applied_index >= index or reader.renew() >= index:
            visible.set_result(index)
        elif self.loop.time() > deadline:
            visible.set_exception(ApplyTimeout("the state machine did not reach the read index", False))
        else:
            self.loop.call_later(_VIEW_POLL, self._await_view, visible, index, deadline)

    def propose_nowait(self, data: bytes) -> asyncio.Future:
        if not self.link.is_leader:
            raise NotLeaderError("the Raft process does not lead")
        proposed = self.link.propose(data)
        proposed.add_done_callback(self._wrote)
        return proposed

    def _wrote(self, proposed: asyncio.Future) -> None:
        if not proposed.cancelled() and proposed.exception() is None:
            self._wrote_index = max(self._wrote_index, proposed.result()[0])

    async def propose(self, data: bytes) -> tuple[int, object]:
        index, result = await self.propose_nowait(data)
        return index, result


def _ignore_outcome(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a failed renewal is not an error to report


@dataclass
class WorkerContext:
    """A worker's :class:`~raftkv.http.api.context.KeyValueContext`: what the
    data plane (:mod:`raftkv.http.api.kv`) needs."""
    node: WorkerNode
    id: str
    max_body: int
    link: LinkClient
    proxy: RaftProcessProxy

    async def on_leader(self, call: Call, local: Callable[[], Awaitable[Reply]], write: bool) -> Reply:
        # The Raft process decides: it confirms leadership on every read and
        # write, so a worker's guess can only send a request the longer way.
        if self.link.is_leader:
            try:
                return await local()
            except NotLeaderError:
                pass
        return await self.proxy.relay(call)

    def known_leader(self) -> dict | None:
        return self.link.leader


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(spec: dict) -> int:
    loop = asyncio.get_running_loop()
    node_id = spec["node_id"]
    max_body = spec["max_body"]
    link = LinkClient()
    await link.connect(spec["link"])
    reader = KVReader(spec["state_machine"])
    proxy = RaftProcessProxy(node_id, spec["internal"], lambda: link.leader)
    board = LeaseBoard(spec["lease_board"]) if spec.get("lease_board") else None
    ctx = WorkerContext(WorkerNode(node_id, link, reader, spec["apply_timeout"], board), node_id, max_body, link,
                        proxy)
    limits = HttpLimits.from_spec(spec["limits"])
    raise_open_files_limit(limits, worker_log)
    relay_server = web.Server(proxy.handle, access_log=None, **limits.aiohttp_kwargs())
    fast = FastPath(fast_routes(ctx), fallback=lambda: None,
                    wanted_headers=DEFAULT_WANTED_HEADERS + ("content-type",),
                    errors=lambda exc: error_reply(node_id, exc, ctx.known_leader()), served_by=node_id,
                    log=worker_log, **limits.fast_path_kwargs())
    fast.fallback = JsonErrorHandler.factory(relay_server, loop, fast, node_id, worker_log, limits, access_log=None)
    try:
        sock = _listen(spec["bind"], spec["port"])
    except OSError as exc:
        worker_log.error("HTTP worker cannot listen", bind=f"{spec['bind']}:{spec['port']}", error=str(exc))
        return 1
    listener = await loop.create_server(fast, sock=sock)
    link.hello()
    worker_log.info("HTTP worker serving", pid=os.getpid(), bind=f"{spec['bind']}:{spec['port']}")

    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await asyncio.wait([link.closed, stop], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not stop.done():
        worker_log.warn("Raft process is gone, HTTP worker stopping", pid=os.getpid())
        code = 1
    listener.close()
    fast.close()
    await relay_server.shutdown(1.0)
    link.close()
    await proxy.close()
    reader.close()
    if board is not None:
        board.close()
    worker_log.info("HTTP worker stopped", pid=os.getpid())
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    hclog.configure(spec.get("log_level", "INFO"), spec.get("log_format", "hclog"), stream=sys.stderr)
    import uvloop
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(spec))


if __name__ == "__main__":
    sys.exit(main())
