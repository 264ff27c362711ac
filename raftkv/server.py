"""The asyncio runtime of one raftkv node: drives the sans-IO Raft core.

Theory of operation
-------------------
:class:`RaftServer` owns everything with side effects: the
:class:`~raftkv.raft.node.RaftNode`, the durable stores under
``RAFT_VOLUME_DIR`` (``log/``, ``stable/``, ``snapshots/``), the
:class:`~raftkv.fsm.KVStore`, the TCP transport, the HTTP API and autopilot.

One coroutine, the *driver*, is the only caller of ``node.step``. It sleeps
until ``node.next_deadline()`` or until something arrives, then

1. steps a ``Tick`` and every queued event: received messages, reads
   (``ReadIndex``), membership and admin requests, and all proposals queued
   by HTTP handlers as ONE ``ProposeBatch`` (group commit: one log write and
   one fsync for however many writes arrived together);
2. carries out the accumulated effects in the order the core's contract
   demands (see ``raftkv/raft/__init__.py``): first every persistence effect
   (hard state, log append/truncate/compact, snapshot restore) followed by ONE
   ``LogStore.sync()``, all on a dedicated disk thread; then every ``Send``;
   then the rest in the order emitted: ``Apply`` to the state machine,
   ``Proposed``/``Rejected``/``Completed``/``ReadReady`` to resolve client
   futures, ``TakeSnapshot``, role and configuration changes. ``Log`` effects
   are written as they are met, so lines keep the core's order.

Client requests are futures. A proposal's future is keyed by request id
until the core says ``Proposed(index, term)``; then by index. The entry
applied at that index resolves it: with the state machine's result if the
term matches, or as failed (the entry was replaced) if not. Leaving the
leader role fails the remaining ones as *outcome unknown*: those entries may
still commit under the next leader.

Snapshots are written from the state machine's frozen copy on a worker
thread; the core hears ``SnapshotTaken`` once the snapshot is durable.
Snapshots received from a leader are streamed by the transport straight into
the snapshot store; the handle the core hands back in ``RestoreSnapshot`` is
the stored snapshot's metadata.

HTTP address registry: followers forward to the leader's *HTTP* address,
which Raft does not know. Each node's HTTP address is replicated through the
log as a reserved key ``"\\x00raftkv/http/<id>"`` of the key-value store: a
leader writes its own once its no-op has committed; a follower that finds its
entry missing asks the leader to write it (``POST /_raftkv/register``); and a
join that carries ``httpAddr`` writes it right away. The registry thus
survives restarts and leader changes and lands in snapshots for free; the API
refuses user keys with the reserved prefix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

import aiohttp

from . import hclog
from .config import NodeSettings, describe_raft_config
from .fsm import KVStore, SnapshotFormatError, encode_delete, encode_set
from .gcpolicy import GcPolicy
from .raft import effects as fx
from .raft import events as ev
from .raft.configuration import ConfigCommand, Configuration, Server, Suffrage
from .raft.messages import AppendEntries, EntryType, SnapshotMeta
from .raft.node import LEADER, PersistentState, RaftNode
from .storage import LogStore, SnapshotCorruptError, SnapshotStore, StableStore
from .transport.tcp import TcpTransport

__all__ = ["HTTP_KEY_PREFIX", "RESERVED_PREFIX", "NotLeaderError", "RaftServer", "RequestError",
           "ApplyTimeout", "run_node"]

RESERVED_PREFIX = "\x00raftkv/"
HTTP_KEY_PREFIX = RESERVED_PREFIX + "http/"

_PERSIST = (fx.PersistHardState, fx.AppendToLog, fx.TruncateLog, fx.CompactLog, fx.RestoreSnapshot)
_LEADER_APPEND = (fx.AppendToLog, fx.CompactLog)


class RequestError(Exception):
    """A client request failed. ``unknown_outcome``: it may still take effect."""

    def __init__(self, message: str, unknown_outcome: bool = False,
                 leader_id: str | None = None, leader_address: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.unknown_outcome = unknown_outcome
        self.leader_id = leader_id
        self.leader_address = leader_address


class NotLeaderError(RequestError):
    """This node is not the leader; nothing was done."""


class BadBackup(RequestError):
    """An uploaded backup is not a readable raftkv snapshot."""


class ApplyTimeout(RequestError):
    """The request was accepted but did not finish in time."""


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _consume(fut: asyncio.Future) -> None:
    # A request whose HTTP handler gave up (timeout) is still resolved later;
    # retrieve the exception so asyncio does not report it as lost.
    if not fut.cancelled():
        fut.exception()


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _LazySnapshotReader:
    """What the transport streams to a follower. Opening a snapshot verifies
    its CRC by reading it whole, so it happens on the first ``read`` (which
    the transport runs on a worker thread), not in the event loop."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta) -> None:
        self.store = store
        self.meta = meta
        self._file = None

    def _open(self):
        try:
            return self.store.open(self.meta.id)[1]
        except (OSError, SnapshotCorruptError):
            # The core may name a snapshot by the id its leader gave it; ours
            # of the same point has a different id.
            for meta in self.store.list():
                if meta.index == self.meta.index and meta.term == self.meta.term:
                    return self.store.open(meta.id)[1]
            raise

    def read(self, n: int) -> bytes:
        if self._file is None:
            self._file = self._open()
        return self._file.read(n)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _CountingReader:
    """Counts the bytes the state machine reads while restoring."""

    def __init__(self, f) -> None:
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data


def _percent(done: int, total: int) -> str:
    return "%.2f%%" % (100.0 * done / total if total else 100.0)


class _ReceivedSnapshot:
    """The transport's sink for a snapshot streamed from the leader: the
    snapshot store's writer, plus hashicorp's transfer log lines."""

    def __init__(self, writer, expected: int) -> None:
        self.writer = writer
        self.expected = expected
        self.received = 0

    def write(self, data: bytes) -> int:
        self.received += len(data)
        return self.writer.write(data)

    def close(self) -> SnapshotMeta:
        hclog.emit("INFO", "raft", "snapshot network transfer progress",
                   [("read-bytes", self.received),
                    ("percent-complete", _percent(self.received, self.expected or self.received))])
        stored = self.writer.close()
        hclog.emit("INFO", "raft", "copied to local snapshot", [("bytes", self.received)])
        return stored

    def cancel(self) -> None:
        self.writer.cancel()


class RaftServer:
    """One node: see the module docstring."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.id = settings.node_id
        self.raft_address = settings.raft_address()
        self.http_address = settings.http_address()
        self.node: RaftNode | None = None
        self.kv: KVStore | None = None
        self.transport: TcpTransport | None = None
        self.http_client: aiohttp.ClientSession | None = None
        self.exit_code = 0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._disk = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raftkv-disk")
        self._snap_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raftkv-snapshot")
        self._ids = itertools.count(1)
        self._inbox: list = []
        self._proposals: list[ev.Propose] = []
        self._waiter: asyncio.Future | None = None
        self._requests: dict[int, asyncio.Future] = {}
        self._by_index: dict[int, tuple[int, asyncio.Future]] = {}
        self._snapshot_task: asyncio.Task | None = None
        self._state_event = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._configuration: Configuration = Configuration()
        self._registering = False
        self._next_register_at = 0.0
        self._role = "Follower"
        self.had_state = False
        self.log_store: LogStore | None = None
        self.stable: StableStore | None = None
        self.snapshots: SnapshotStore | None = None
        self.api_runner = None
        self.autopilot = None
        self._lock_fd: int | None = None
        self.faults = None
        self._gc = GcPolicy()
        self.metrics = None  # a metrics.NodeMetrics once the API starts (metrics.instrument)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the node runs on (set by ``start``)."""
        return self._loop

    # ------------------------------------------------------------------ logging

    @staticmethod
    def _log_fn(logger: str):
        def log(level: str, message: str, fields) -> None:
            hclog.emit(level, logger, message, fields)
        return log

    @staticmethod
    def _net_log(level: str, logger: str, message: str, fields) -> None:
        hclog.emit(level, logger, message, fields)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the volume, restore, bind the listeners and start driving."""
        self._loop = asyncio.get_running_loop()
        s = self.settings
        hclog.emit("INFO", "raft", "creating Raft", [("config", describe_raft_config(s))])
        data_dir = s.data_dir
        os.makedirs(data_dir, exist_ok=True)
        self._lock_volume(data_dir)
        self.log_store = LogStore(os.path.join(data_dir, "log"), log=self._log_fn("raft"))
        self.stable = StableStore(os.path.join(data_dir, "stable"), log=self._log_fn("raft"))
        self.snapshots = SnapshotStore(os.path.join(data_dir, "snapshots"), retain=2,
                                       log=self._log_fn("raft.snapshot"))
        self._uploads = os.path.join(data_dir, "uploads")
        shutil.rmtree(self._uploads, ignore_errors=True)  # a restore cut short by a crash
        os.makedirs(self._uploads)
        self.kv = KVStore(os.path.join(data_dir, "fsm.db"), log=self._log_fn("fsm"))
        snapshots = self.snapshots.list()
        known = max([self.log_store.last_index()] + [m.index for m in snapshots])
        if self.kv.applied_index > known:
            # not this log's state machine (the rest of the volume was wiped):
            # keeping it would skip the first entries the new log applies
            hclog.emit("WARN", "fsm", "state machine file is ahead of the log and snapshots, discarding it",
                       [("applied-index", self.kv.applied_index), ("last-known-index", known)])
            self.kv.reset()
        snapshot_meta = self._restore_latest_snapshot(snapshots)
        entries: tuple = ()
        if self.log_store.last_index():
            entries = tuple(self.log_store.entries(self.log_store.first_index(), self.log_store.last_index()))
        state = PersistentState(
            current_term=self.stable.term,
            voted_for=self.stable.voted_for,
            # what the state machine has applied is committed too
            commit_index=max(self.stable.commit_hint, self.kv.applied_index),
            snapshot=snapshot_meta,
            entries=entries,
        )
        self.had_state = bool(state.current_term or entries or snapshot_meta)

        if s.fault_injection:
            from .transport.faults import FaultInjector
            self.faults = FaultInjector(log=lambda level, msg, fields: hclog.emit(level, "raft.net", msg, fields))
            hclog.emit("WARN", "raft.net", "fault injection is enabled: /debug/faults can drop or delay traffic", [])
        self.transport = TcpTransport(
            self.id, s.bind_addr, s.raft_port, self._on_message, log=self._net_log,
            describe_peer=self._describe_peer,
            snapshot_source=lambda meta: _LazySnapshotReader(self.snapshots, meta),
            snapshot_sink=self._snapshot_sink,
            on_snapshot_failed=lambda peer: self.submit(ev.SnapshotSendFailed(peer)),
            advertise=self.raft_address,
            max_frame=_max_frame(s),
            faults=self.faults,
            authenticate=s.cluster_key or None,
        )
        await self.transport.start()
        hclog.emit("INFO", "raft.net", "transport listening",
                   [("bind", f"{s.bind_addr}:{s.raft_port}"), ("advertise", self.raft_address)])

        self.node = RaftNode(self.id, self.raft_address, s.raft_config(), state,
                             random.Random(), _now_ms())
        self._configuration = self.node.configuration
        await self._carry_out(self.node.start())
        if s.bootstrap and not self.had_state:
            conf = Configuration((Server(self.id, self.raft_address, Suffrage.VOTER),))
            await self._carry_out(self.node.step(ev.Bootstrap(conf)))

        self.http_client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.apply_timeout / 1000 + 5, connect=3),
            connector=aiohttp.TCPConnector(limit=256))
        from .api import start_api
        self.api_runner = await start_api(self)
        hclog.emit("INFO", "http", "HTTP API listening",
                   [("bind", f"{s.bind_addr}:{s.http_port}"), ("advertise", self.http_address)])

        from .autopilot import Autopilot
        self.autopilot = Autopilot(self)
        self._spawn(self._drive(), "raftkv-driver")
        self._spawn(self.autopilot.run(), "raftkv-autopilot")
        self._spawn(self._housekeeping(), "raftkv-housekeeping")
        if s.join:
            if self.had_state:
                hclog.emit("INFO", "http", "not joining: node has existing state and rejoins as it was",
                           [("join", list(s.join))])
            else:
                self._spawn(self._join_cluster(), "raftkv-join")
        self._gc.started()

    def _lock_volume(self, data_dir: str) -> None:
        """One process per volume: a second one opening the same log would
        "repair" the tail the first is still writing. The lock dies with the
        process, so a kill -9 never leaves a stale lock behind."""
        import fcntl
        fd = os.open(os.path.join(data_dir, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RuntimeError(f"volume {data_dir} is in use by another raftkv process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            hclog.emit("ERROR", "raft", "internal task failed",
                       [("task", task.get_name()), ("error", "".join(
                           traceback.format_exception_only(type(exc), exc)).strip())])
            self.exit_code = 1
            self.request_shutdown()

    def _restore_latest_snapshot(self, snapshots: list[SnapshotMeta]) -> SnapshotMeta | None:
        """Load the newest valid snapshot into the state machine, trying older
        ones if a newer one is damaged (the store checks the CRC on open)."""
        for meta in snapshots:
            fields = [("id", meta.id), ("last-index", meta.index), ("last-term", meta.term),
                      ("size-in-bytes", meta.size)]
            try:
                _, f = self.snapshots.open(meta.id)
                with f:
                    if self.kv.applied_index >= meta.index:
                        # the state machine's own file is already past it
                        hclog.emit("INFO", "raft", "state machine is ahead of the snapshot, not restoring",
                                   fields + [("applied-index", self.kv.applied_index)])
                        return meta
                    hclog.emit("INFO", "raft", "starting restore from snapshot", fields)
                    self._restore_fsm(meta, f)
            except Exception as exc:
                hclog.emit("ERROR", "raft", "failed to restore snapshot", fields + [("error", str(exc))])
                continue
            hclog.emit("INFO", "raft", "restored from snapshot", fields)
            return meta
        return None

    def request_shutdown(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._wake()
            asyncio.get_running_loop().create_task(self._shutdown(), name="raftkv-shutdown")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _shutdown(self) -> None:
        hclog.emit("INFO", "raft", "shutting down", [])
        try:
            current = asyncio.current_task()
            for task in self._tasks:
                if task is not current:
                    task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._fail_all(RequestError("node is shutting down", unknown_outcome=True))
            if self.api_runner is not None:
                await self.api_runner.cleanup()
            if self.http_client is not None:
                await self.http_client.close()
            if self.transport is not None:
                await self.transport.close()
            if self._snapshot_task is not None:
                await asyncio.gather(self._snapshot_task, return_exceptions=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._disk, self._close_stores)
        except Exception as exc:
            hclog.emit("ERROR", "raft", "failed to shut down cleanly", [("error", str(exc))])
            self.exit_code = self.exit_code or 1
        finally:
            self._disk.shutdown(wait=False)
            self._snap_pool.shutdown(wait=False)
            self._stopped.set()

    def _close_stores(self) -> None:
        if self.stable is not None:
            if self.node is not None:
                self.stable.set_commit_hint(self.kv.applied_index)
            self.stable.flush()
            self.stable.close()
        if self.log_store is not None:
            self.log_store.close()
        if self.kv is not None:
            self.kv.close()

    def _fail_all(self, error: RequestError) -> None:
        futures = list(self._requests.values()) + [f for _, f in self._by_index.values()]
        self._requests.clear()
        self._by_index.clear()
        self._proposals.clear()
        self._inbox.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)

    # ------------------------------------------------------------------ inputs

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def submit(self, event) -> None:
        """Queue an event for the driver (transport and timers use this)."""
        if self._stopping:
            return
        self._inbox.append(event)
        self._wake()

    def _on_message(self, from_id: str, message) -> None:
        if self._stopping:
            return
        self._inbox.append(ev.Receive(from_id, message))
        self._wake()

    def _describe_peer(self, peer_id: str) -> str:
        node = self.node
        server = node.configuration.get(peer_id) if node else None
        return str(server) if server else peer_id

    # ------------------------------------------------------------------ the driver

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        node = self.node
        while not self._stopping:
            if not self._inbox and not self._proposals:
                delay = (node.next_deadline() - _now_ms()) / 1000
                if delay > 0:
                    waiter = loop.create_future()
                    self._waiter = waiter
                    handle = loop.call_later(min(delay, 3600), _resolve, waiter)
                    try:
                        await waiter
                    finally:
                        handle.cancel()
                        self._waiter = None
                    if self._stopping:
                        break
            effects = self._step(ev.Tick(_now_ms()))
            events, self._inbox = self._inbox, []
            if self._proposals:
                events.append(ev.ProposeBatch(tuple(self._proposals)))
                self._proposals = []
            for event in events:
                effects.extend(self._step(event))
            if effects:
                await self._carry_out(effects)

    def _step(self, event) -> list:
        try:
            return self.node.step(event)
        except Exception as exc:
            # A bug, or input the core could not digest; the node's state is
            # still what the core left, so keep serving and say what happened.
            hclog.emit("ERROR", "raft", "failed to process event",
                       [("event", type(event).__name__), ("error", f"{type(exc).__name__}: {exc}")])
            if hclog.is_enabled("DEBUG"):
                hclog.emit("DEBUG", "raft", "traceback", [("trace", traceback.format_exc())])
            return []

    async def _carry_out(self, effects: list) -> None:
        persist = [e for e in effects if type(e) in _PERSIST]
        early = False
        if persist and self.node.role == LEADER and all(type(e) in _LEADER_APPEND for e in persist):
            # A leader's AppendEntries may leave while its own copy of the
            # entries is being written (Raft thesis §10.2.1): the followers
            # store them independently, and the leader counts its own copy
            # towards commitment only in later steps, which start after this
            # write is durable. Nothing else leaves early.
            early = True
            transport, metrics = self.transport, self.metrics
            for e in effects:
                if type(e) is fx.Send and type(e.message) is AppendEntries:
                    if metrics is not None:
                        metrics.sent(e.to, e.message)
                    transport.send(e.to, e.address, e.message)
        if persist:
            try:
                await self._loop.run_in_executor(self._disk, self._persist, persist)
            except Exception as exc:
                # Raft cannot go on without its disk: never send or ack
                # anything that might not be durable.
                hclog.emit("ERROR", "raft", "failed to persist, shutting down",
                           [("error", f"{type(exc).__name__}: {exc}")])
                self.exit_code = 1
                self.request_shutdown()
                return
            if any(type(e) is fx.CompactLog for e in persist):
                self._gc.compacted()
        # Log lines go out once the state they describe is durable, so that
        # e.g. "Installed remote snapshot" follows the restore it reports.
        for e in effects:
            if type(e) is fx.Log:
                hclog.emit(e.level, e.logger, e.message, e.fields)
        transport, metrics = self.transport, self.metrics
        for e in effects:
            if type(e) is fx.Send and not (early and type(e.message) is AppendEntries):
                if metrics is not None:
                    metrics.sent(e.to, e.message)
                transport.send(e.to, e.address, e.message)
        for e in effects:
            t = type(e)
            if t is fx.Apply:
                self._apply(e.entries)
            elif t is fx.Proposed:
                fut = self._requests.pop(e.request_id, None)
                if fut is not None:
                    self._by_index[e.index] = (e.term, fut)
            elif t is fx.Rejected:
                fut = self._requests.pop(e.request_id, None)
                if fut is not None and not fut.done():
                    # not the leader, or handing leadership over: nothing was
                    # done, and the (next) leader can take the request
                    retry_elsewhere = e.error.startswith(("node is not the leader",
                                                          "leadership transfer in progress"))
                    cls = NotLeaderError if retry_elsewhere else RequestError
                    fut.set_exception(cls(e.error, e.unknown_outcome, e.leader_id, e.leader_address))
            elif t is fx.Completed or t is fx.ReadReady:
                fut = self._requests.pop(e.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(e.index if t is fx.ReadReady else None)
            elif t is fx.StateChanged:
                self._state_changed(e)
            elif t is fx.ConfigurationChanged:
                self._configuration_changed(e.configuration)
            elif t is fx.TakeSnapshot:
                self._take_snapshot(e.meta)

    def _persist(self, effects: list) -> None:
        """Runs on the disk thread: make the persistence effects durable, in
        order, with one fsync of the log for all appends."""
        appended = False
        log_store = self.log_store
        for e in effects:
            t = type(e)
            if t is fx.AppendToLog:
                log_store.append(e.entries)
                appended = True
            elif t is fx.PersistHardState:
                self.stable.set_hard_state(e.term, e.voted_for)
            elif t is fx.TruncateLog:
                if appended:
                    log_store.sync()
                    appended = False
                log_store.truncate_from(e.from_index)
            elif t is fx.CompactLog:
                log_store.compact_through(e.through_index)
            elif t is fx.RestoreSnapshot:
                if isinstance(e.data, KVStore):
                    self._restore_backup(e.meta, e.data)
                else:
                    self._restore_received(e.meta, e.data)
        if appended:
            log_store.sync()

    def _restore_backup(self, meta: SnapshotMeta, backup: KVStore) -> None:
        """A user's backup becomes the state at ``meta.index`` and is stored
        as our snapshot there, which is what followers will be sent."""
        self.kv.adopt(backup, meta.index, keep_prefix=RESERVED_PREFIX)
        backup.close()
        writer = self.snapshots.create(meta)
        try:
            self.kv.snapshot()(writer)
        except BaseException:
            writer.cancel()
            raise
        stored = writer.close()
        self.stable.set_commit_hint(meta.index)
        self._loop.call_soon_threadsafe(self.submit, ev.SnapshotTaken(stored))

    def _restore_received(self, meta: SnapshotMeta, handle: Any) -> None:
        # ``handle`` is the SnapshotMeta our snapshot store returned when the
        # transport finished writing the received bytes; it is already durable.
        stored = handle if isinstance(handle, SnapshotMeta) else meta
        _, f = self.snapshots.open(stored.id)
        with f:
            self._restore_fsm(stored, f)
        self.stable.set_commit_hint(meta.index)
        if self.metrics is not None:
            self.metrics.snapshot_installed.inc()

    def _restore_fsm(self, meta: SnapshotMeta, f) -> None:
        reader = _CountingReader(f)
        self.kv.restore(reader)
        hclog.emit("INFO", "raft", "snapshot restore progress",
                   [("id", meta.id), ("last-index", meta.index), ("last-term", meta.term),
                    ("size-in-bytes", meta.size), ("read-bytes", reader.count),
                    ("percent-complete", _percent(reader.count, meta.size))])

    def _snapshot_sink(self, from_id: str, meta: SnapshotMeta) -> "_ReceivedSnapshot":
        return _ReceivedSnapshot(self.snapshots.create(meta), meta.size)

    def _apply(self, entries) -> None:
        t0 = time.perf_counter()
        kv = self.kv
        by_index = self._by_index
        for entry in entries:
            if entry.type is EntryType.COMMAND:
                result = kv.apply(entry.index, entry.data)
            else:
                kv.mark_applied(entry.index)
                result = None
            waiting = by_index.pop(entry.index, None) if by_index else None
            if waiting is not None:
                term, fut = waiting
                if fut.done():
                    continue
                if term == entry.term:
                    fut.set_result((entry.index, result))
                else:
                    fut.set_exception(RequestError(
                        "the entry was replaced by a new leader's log before it committed"))
        if entries:
            kv.commit()
            self.stable.set_commit_hint(entries[-1].index)
            if self.metrics is not None:
                self.metrics.fsm_apply.observe(time.perf_counter() - t0)

    def _state_changed(self, e: fx.StateChanged) -> None:
        if self.metrics is not None:
            self.metrics.role_changed(e.role, e.term)
        was = self._role
        self._role = e.role
        if was == LEADER and e.role != LEADER:
            pending = [f for _, f in self._by_index.values()]
            self._by_index.clear()
            for fut in pending:
                if not fut.done():
                    fut.set_exception(RequestError("leadership lost before the entry committed",
                                                   unknown_outcome=True, leader_id=e.leader_id,
                                                   leader_address=e.leader_address))
        event, self._state_event = self._state_event, asyncio.Event()
        event.set()

    def _configuration_changed(self, configuration: Configuration) -> None:
        gone = set(self._configuration.ids) - set(configuration.ids) - {self.id}
        self._configuration = configuration
        for peer_id in gone:
            self._loop.create_task(self.transport.disconnect(peer_id))

    # ------------------------------------------------------------------ snapshots

    def _take_snapshot(self, meta: SnapshotMeta) -> None:
        # A snapshot still being written does not stop this one: the state is
        # captured now and the single snapshot thread writes them in order.
        if self.metrics is not None:
            self.metrics.snapshot_create.inc()
        if self.kv.applied_index != meta.index:
            hclog.emit("ERROR", "raft", "failed to take snapshot",
                       [("error", f"state machine is at {self.kv.applied_index}, not {meta.index}")])
            return
        persist = self.kv.snapshot()  # the consistent view, captured now
        self._snapshot_task = self._loop.create_task(self._write_snapshot(meta, persist))

    async def _write_snapshot(self, meta: SnapshotMeta, persist) -> SnapshotMeta:
        def write() -> SnapshotMeta:
            writer = self.snapshots.create(meta)
            try:
                persist(writer)
            except BaseException:
                writer.cancel()
                raise
            return writer.close()
        try:
            stored = await self._loop.run_in_executor(self._snap_pool, write)
        except Exception as exc:
            hclog.emit("ERROR", "raft", "failed to take snapshot", [("error", str(exc))])
            raise
        self.submit(ev.SnapshotTaken(stored))
        return stored

    # ------------------------------------------------------------------ requests

    def _register(self) -> tuple[int, asyncio.Future]:
        if self._stopping:
            raise RequestError("node is shutting down")
        rid = next(self._ids)
        fut = self._loop.create_future()
        fut.add_done_callback(_consume)
        self._requests[rid] = fut
        return rid, fut

    async def _await(self, fut: asyncio.Future, timeout: float | None, what: str) -> Any:
        timeout = self.settings.apply_timeout / 1000 if timeout is None else timeout
        # One timer per request, no shield/timeout context: the hot path of
        # every write and linearizable read. A handler that is cancelled
        # cancels ``fut``; the driver skips futures that are already done.
        handle = self._loop.call_later(timeout, _expire, fut, what)
        try:
            return await fut
        finally:
            handle.cancel()

    def _check_leader(self) -> None:
        node = self.node
        if node.role != LEADER:
            raise NotLeaderError("node is not the leader", False, node.leader_id, node.leader_address)

    async def propose(self, data: bytes, timeout: float | None = None) -> tuple[int, Any]:
        """Replicate a command; returns (index, state machine result) once applied."""
        self._check_leader()
        rid, fut = self._register()
        self._proposals.append(ev.Propose(rid, data))
        self._wake()
        t0 = time.perf_counter()
        result = await self._await(fut, timeout, "the write to commit")
        if self.metrics is not None:
            self.metrics.commit_time.observe(time.perf_counter() - t0)
        return result

    async def read_barrier(self, timeout: float | None = None) -> int:
        """ReadIndex: returns once a linearizable read may be served locally."""
        self._check_leader()
        rid, fut = self._register()
        self._inbox.append(ev.ReadIndex(rid))
        self._wake()
        try:
            return await self._await(fut, timeout, "leadership confirmation")
        except ApplyTimeout as exc:
            exc.unknown_outcome = False  # a read changes nothing
            raise

    async def change_membership(self, command: ConfigCommand, server_id: str, address: str = "",
                                timeout: float | None = None) -> int:
        self._check_leader()
        rid, fut = self._register()
        self._inbox.append(ev.ChangeMembership(rid, command, server_id, address))
        self._wake()
        index, _ = await self._await(fut, timeout, "the configuration change to commit")
        return index

    async def transfer_leadership(self, target: str | None, timeout: float | None = None) -> None:
        self._check_leader()
        rid, fut = self._register()
        self._inbox.append(ev.TransferLeadership(rid, target))
        self._wake()
        await self._await(fut, timeout, "the leadership transfer")

    async def snapshot_now(self, timeout: float | None = None) -> SnapshotMeta:
        rid, fut = self._register()
        self._inbox.append(ev.RequestSnapshot(rid))
        self._wake()
        await self._await(fut, timeout, "the snapshot to start")
        task = self._snapshot_task
        if task is None:
            raise RequestError("snapshot was not started")
        try:
            return await asyncio.shield(task)
        except Exception as exc:
            raise RequestError(f"failed to take snapshot: {exc}") from None

    async def latest_snapshot(self) -> tuple[SnapshotMeta, Any]:
        """A snapshot holding every write applied so far, opened for reading
        (the backup ``GET /snapshot`` sends): a fresh one unless nothing was
        applied since the newest."""
        try:
            await self.snapshot_now()
        except RequestError as exc:
            if "nothing new to snapshot" not in str(exc):
                raise
        opened = await self._loop.run_in_executor(self._snap_pool, self.snapshots.latest_valid)
        if opened is None:
            raise RequestError("no snapshot to send")
        return opened

    def upload_file(self) -> tuple[int, str]:
        """A new file in the volume for an uploaded backup: (fd, path)."""
        return tempfile.mkstemp(prefix="restore-", dir=self._uploads)

    async def restore_backup(self, path: str, timeout: float | None = None) -> tuple[int, int]:
        """Make the backup at ``path`` the whole cluster's state (hashicorp
        Raft.Restore). Returns (index of the restore, number of keys)."""
        self._check_leader()

        def load() -> KVStore:
            # checked in a scratch store in the volume, not in memory
            backup = KVStore(path + ".db", temporary=True)
            try:
                with open(path, "rb") as f:
                    backup.restore(f)
            except BaseException:
                backup.close()
                raise
            return backup
        try:
            backup = await self._loop.run_in_executor(self._snap_pool, load)
        except SnapshotFormatError as exc:
            raise BadBackup(f"not a raftkv snapshot: {exc}") from None
        self._check_leader()
        rid, fut = self._register()
        self._inbox.append(ev.RestoreUserSnapshot(rid, backup))
        self._wake()
        index, _ = await self._await(fut, timeout, "the restored state to commit")
        return index - 1, self._user_key_count()

    async def wait_state_change(self, timeout: float) -> None:
        """Return when the role/term/leader changes, or after ``timeout``."""
        event = self._state_event
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
        except TimeoutError:
            pass

    # ------------------------------------------------------------------ HTTP registry

    def http_address_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        if node_id == self.id:
            return self.http_address
        return self.kv.get(HTTP_KEY_PREFIX + node_id)

    def leader_http(self) -> str | None:
        return self.http_address_of(self.node.leader_id)

    async def forget_http(self, node_id: str) -> None:
        """(Leader) drop a removed server's registry entry; best effort."""
        if self.kv.get(HTTP_KEY_PREFIX + node_id) is not None and not self.node.configuration.has(node_id):
            try:
                await self.propose(encode_delete(HTTP_KEY_PREFIX + node_id))
            except RequestError:
                pass

    async def register_http(self, node_id: str, http_address: str) -> int | None:
        """(Leader) record a node's HTTP address in the replicated registry."""
        if self.kv.get(HTTP_KEY_PREFIX + node_id) == http_address:
            return None
        index, _ = await self.propose(encode_set(HTTP_KEY_PREFIX + node_id, http_address))
        return index

    async def _housekeeping(self) -> None:
        """Keeps this node's HTTP address in the registry (see module doc)."""
        period = max(0.1, min(1.0, self.settings.heartbeat_timeout / 2000))
        while True:
            await asyncio.sleep(period)
            self._gc.tick()
            node = self.node
            if self._registering or self.kv.get(HTTP_KEY_PREFIX + self.id) == self.http_address:
                continue
            if node.role == LEADER:
                if node.committed_in_term():
                    self._registering = True
                    self._loop.create_task(self._register_self_local())
            elif node.leader_id and node.configuration.has(self.id):
                leader_http = self.leader_http()
                if leader_http and time.monotonic() >= self._next_register_at:
                    self._registering = True
                    self._loop.create_task(self._register_self_remote(leader_http))

    async def _register_self_local(self) -> None:
        try:
            await self.register_http(self.id, self.http_address)
        except RequestError:
            pass
        finally:
            self._registering = False

    async def _register_self_remote(self, leader_http: str) -> None:
        try:
            url = f"http://{leader_http}/_raftkv/register"
            async with self.http_client.post(url, params={"nodeId": self.id, "httpAddr": self.http_address},
                                             headers=self.admin_headers(),
                                             timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        finally:
            self._registering = False
        if not ok:
            self._next_register_at = time.monotonic() + 1.0

    def admin_headers(self) -> dict[str, str]:
        """With RAFT_CLUSTER_KEY: the bearer token admin routes require."""
        key = self.settings.cluster_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ------------------------------------------------------------------ joining

    async def _join_cluster(self) -> None:
        """RAFT_JOIN: ask a member to add us, with exponential backoff, until
        it succeeds or a leader has added us by other means."""
        delay = 0.2
        params = {"nodeId": self.id, "raftAddr": self.raft_address, "httpAddr": self.http_address}
        while True:
            if self.node.configuration.has(self.id) and self.node.leader_id:
                return
            for base in self.settings.join:
                url = base + "/join"
                try:
                    async with self.http_client.post(url, params=params, headers=self.admin_headers(),
                                                     timeout=aiohttp.ClientTimeout(total=15)) as resp:
                        body = await resp.text()
                        if resp.status == 200:
                            hclog.emit("INFO", "http", "joined cluster", [("via", base), ("response", body.strip())])
                            return
                        error = f"HTTP {resp.status}: {body.strip()[:200]}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    error = str(exc) or type(exc).__name__
                hclog.emit("WARN", "http", "failed to join cluster, will retry",
                           [("via", base), ("error", error), ("backoff time", _td(delay))])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    # ------------------------------------------------------------------ views

    def status(self) -> dict:
        node = self.node
        st = node.status()
        conf = node.configuration
        leader = None
        if node.leader_id:
            leader = {"id": node.leader_id, "address": node.leader_address or "",
                      "http": self.http_address_of(node.leader_id)}
        last_contact = st["last_contact"]
        return {
            "id": self.id,
            "state": "Shutdown" if self._stopping else st["state"],
            "term": st["term"],
            "last_log_index": st["last_log_index"],
            "last_log_term": st["last_log_term"],
            "commit_index": st["commit_index"],
            "applied_index": self.kv.applied_index,
            "fsm_pending": max(0, st["commit_index"] - self.kv.applied_index),
            "last_snapshot_index": st["last_snapshot_index"],
            "last_snapshot_term": st["last_snapshot_term"],
            "last_contact": None if last_contact < 0 else last_contact,
            "num_peers": sum(1 for v in conf.voters if v != self.id),
            "leader": leader,
            "latest_configuration": [s.to_dict() for s in conf.servers],
            "latest_configuration_index": st["configuration_index"],
            "protocol_version": 3,
            "raft_address": self.raft_address,
            "http_address": self.http_address,
            "num_keys": self._user_key_count(),
            "rss_bytes": rss_bytes(),
        }

    def _user_key_count(self) -> int:
        n = len(self.kv)
        # the HTTP registry lives in the same dictionary; don't count it
        # (entries of removed servers are deleted when they are removed)
        for server in self.node.configuration.servers:
            if (HTTP_KEY_PREFIX + server.id) in self.kv:
                n -= 1
        return max(n, 0)

    def peers(self) -> list[dict]:
        from .autopilot import server_health
        node = self.node
        out = []
        for s in node.configuration.servers:
            row = {"id": s.id, "address": s.address, "suffrage": s.suffrage.value,
                   "leader": s.id == node.leader_id, "http": self.http_address_of(s.id),
                   "last_contact": None, "healthy": None}
            if node.role == LEADER:
                if s.id == self.id:
                    row.update(last_contact=0, healthy=True, match_index=node.log.last_index)
                elif s.id in node.progress:
                    pr = node.progress[s.id]
                    row.update(last_contact=max(0, node.now - pr.last_contact),
                               healthy=server_health(node, s.id, self.settings.last_contact_threshold,
                                                     self.settings.max_trailing_logs),
                               match_index=pr.match_index)
            elif s.id == node.leader_id and node.last_contact() >= 0:
                row["last_contact"] = node.last_contact()
            elif s.id == self.id:
                row["last_contact"] = 0
            out.append(row)
        return out


def _max_frame(s: NodeSettings) -> int:
    # The core caps an AppendEntries at MaxAppendEntries entries, not bytes:
    # a batch of values at the size limit must still fit in one frame, or
    # replication of that batch would be refused by the codec forever.
    return max(64 * 1024 * 1024, s.max_append_entries * (s.max_body + 4096) + 1024 * 1024)


def _expire(fut: asyncio.Future, what: str) -> None:
    if not fut.done():
        fut.set_exception(ApplyTimeout(f"timed out waiting for {what}", unknown_outcome=True))


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _td(seconds: float):
    from datetime import timedelta
    return timedelta(seconds=seconds)


async def _serve(settings: NodeSettings) -> int:
    server = RaftServer(settings)
    loop = asyncio.get_running_loop()
    try:
        await server.start()
    except Exception as exc:  # ports in use, an unreadable volume ...
        hclog.emit("ERROR", "raft", "failed to start node", [("error", f"{type(exc).__name__}: {exc}")])
        await _abort(server)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_shutdown)
    await server.wait_stopped()
    return server.exit_code


async def _abort(server: RaftServer) -> None:
    for closer in (server.transport.close() if server.transport else None,
                   server.http_client.close() if server.http_client else None,
                   server.api_runner.cleanup() if server.api_runner else None):
        if closer is not None:
            try:
                await closer
            except Exception:
                pass
    for store in (server.log_store, server.stable):
        if store is not None:
            try:
                store.close()
            except Exception:
                pass


class _LogStream:
    """stderr for log lines, minus its failure modes: a node whose log reader
    went away (``raftkv serve 2>&1 | head``) must keep serving and still shut
    down cleanly, not die of BrokenPipeError in the middle of a step."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                self.stream.write(text)
            except (OSError, ValueError):
                self.broken = True

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True


def run_node(settings: NodeSettings) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit code."""
    hclog.configure(settings.log_level, settings.log_format, stream=_LogStream(sys.stderr))
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(_serve(settings))
