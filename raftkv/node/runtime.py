"""The asyncio runtime of one raftkv node: drives the sans-IO Raft core.

Theory of operation
-------------------
:class:`Node` owns everything with side effects: the
:class:`~raftkv.raft.node.RaftNode`, the
:class:`~raftkv.node.disk.volume.Volume` (log, hard state, snapshots, the
SQLite state machine), the TCP transport and autopilot.

One coroutine, the *driver*, is the only caller of ``RaftNode.step``. It
sleeps until the core's next deadline or until something arrives, then

1. steps a ``Tick`` and every queued event: received messages, reads
   (``ReadIndex``), membership and admin requests, and all proposals queued
   by callers as ONE ``ProposeBatch`` (group commit: one log write and one
   fsync for however many writes arrived together);
2. carries out the accumulated effects through the
   :class:`~raftkv.node.executor.EffectExecutor` — the same code the
   simulator runs — with the persistence on a dedicated disk thread.

With ``RAFT_TRACE=FILE`` the driver also hands every step (event, effects,
status) to a :class:`~raftkv.node.trace.TraceRecorder`, written once per
batch, which ``raftkv replay`` feeds through a fresh core; unset, that costs
one ``if`` per step.
While a page reads ``/debug/steps``, the driver also hands each step to the
node's :class:`~raftkv.learn.live.StepTap` (``steps``); unwatched, that costs
one attribute check per step.

Snapshots are written from the state machine's frozen copy on a worker
thread; the core hears ``SnapshotTaken`` once the snapshot is durable.
Snapshots received from a leader are streamed by the transport straight into
the snapshot store; the handle the core hands back in ``RestoreSnapshot`` is
the stored snapshot's metadata.

The volume is watched (:mod:`raftkv.node.disk.watchdog`): a write or fsync
error, or the volume directory deleted or replaced under the node, stops it
with one ERROR line and exit code 74. Nothing written since the last good
write is acknowledged, what waits fails (507 for a full disk), and no request
is answered from the state machine any more (``get_local`` refuses once the
node stops).

The rest of raftkv (the HTTP side) uses the node only through its public
methods: ``propose``, ``read_barrier``/``get_local``, ``change_membership``,
``transfer_leadership``, ``snapshot_now``/``latest_snapshot``/
``restore_backup``, and the views ``status()``, ``peers()`` and
``log_view()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import sqlite3
import time
import traceback
from collections.abc import Callable

from raftkv.config.settings import NodeSettings, describe_raft_config
from raftkv.config.tls import TlsContexts
from raftkv.learn.live import StepTap
from raftkv.observability import hclog
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import SnapshotMeta
from raftkv.raft.node import LEADER, RaftNode
from raftkv.raft.status import NodeStatus
from raftkv.statemachine.commands import RESERVED_PREFIX
from raftkv.statemachine.kvstore import KVStore
from raftkv.transport.contract import Transport

from .api import NodeRequests
from .build import Parts, choose_parts
from .disk.snapshots import LazySnapshotReader, ReceivedSnapshot
from .disk.volume import Volume, read_peers_file
from .disk.watchdog import (
    EXIT_STORAGE_FAILED,
    GuardedStorage,
    ReportingSink,
    VolumeFailure,
    VolumeWatch,
    io_failure,
)
from .errors import ShuttingDown
from .executor import EffectExecutor
from .host import ExecutorHost, KVStateMachine, TransportNetwork
from .policies.autopilot import Autopilot
from .policies.gcpolicy import GcPolicy
from .requests import PendingRequests
from .trace import TraceRecorder
from .views import LogView, peers_view, status_view

raft_log = hclog.get_logger("raft")
net_log = hclog.get_logger("raft.net")
fsm_log = hclog.get_logger("fsm")

__all__ = ["Node"]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# A follower writes an append of at most this many entries on the loop's thread.
_INLINE_APPEND_ENTRIES = 8


def _small_append(persist: list) -> bool:
    entries = 0
    for e in persist:
        t = type(e)
        if t is fx.AppendToLog:
            entries += len(e.entries)
        elif t is not fx.PersistHardState:
            return False  # truncation, compaction, a snapshot: off the loop
    return entries <= _INLINE_APPEND_ENTRIES


class Node(ExecutorHost, NodeRequests):
    """One node: see the module docstring."""

    def __init__(self, settings: NodeSettings, metrics=None, tls: TlsContexts | None = None,
                 parts: Parts | None = None) -> None:
        self.settings = settings
        # the state machine's format and the transport, chosen by build.py
        self.parts = parts or choose_parts(settings, tls)
        self.tls = tls  # RAFT_TLS_*: the Raft port's mutual-TLS contexts
        self.id = settings.node_id
        self.raft_address = settings.raft_address()
        self.http_address = settings.http_address()
        self.metrics = metrics  # raftkv.observability.metrics.NodeMetrics, or None
        self.exit_code = 0
        self.had_state = False
        self.faults = self.parts.faults  # a FaultInjector with RAFT_FAULT_INJECTION
        # set once the volume failed or went away: the node serves nothing more
        self._storage_failure: VolumeFailure | None = None

        self._disk = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raftkv-disk")
        self._snap_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raftkv-snapshot")
        self._network = TransportNetwork()
        self._inbox: list = []
        # The linearizable reads that arrived since the driver last took the
        # inbox share one ReadIndex request: its read index is taken when the
        # core steps it, after every one of them arrived.
        self._read_batch: asyncio.Future | None = None
        self._lease_batch: asyncio.Future | None = None
        # Told the core's read lease (until, floor) whenever it changes, after
        # the steps that changed it and before any message they send leaves:
        # a reader outside the process (an HTTP worker) stops serving under a
        # lease before a handover's TimeoutNow is out.
        self.lease_listener: Callable[[tuple[int, int]], None] | None = None
        self._lease_told: tuple[int, int] = (0, 0)
        # Told the applied index, and the highest one that changed keys
        # (KVStore.changed_index), as the state machine's file is about to
        # hold them: before any other process can read those entries there,
        # and so before any write among them is acknowledged.
        self.applied_listener: Callable[[int, int], None] | None = None
        self._proposals: list[ev.Propose] = []
        # a write as the state machine's log entries carry it (KVStore.encode_command)
        self._encode_command: Callable[[bytes], bytes] = KVStore.encode_command
        self._waiter: asyncio.Future | None = None
        self._snapshot_task: asyncio.Task | None = None
        self._state_event = asyncio.Event()
        self._stopping = False      # no more steps, no new requests
        self._stop_started = False
        self._stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._configuration: Configuration = Configuration()
        self._role = "Follower"
        self._leader: tuple[str | None, str | None] = (None, None)  # (id, Raft address)
        self._gc = GcPolicy()
        self._trace: TraceRecorder | None = None  # RAFT_TRACE: every step, for raftkv replay
        # /debug/steps: every step as JSON while someone listens (raftkv.learn.live)
        self.steps = StepTap(self.id, lambda: getattr(self, "_raft", None))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the node runs on (set by ``start``)."""
        return self._loop

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the volume, restore, bind the Raft port and start driving."""
        self._loop = loop = asyncio.get_running_loop()
        self._requests = PendingRequests(loop)
        s = self.settings
        raft_log.info("creating Raft", config=describe_raft_config(s))
        # read before the volume is opened: a bad file must leave it untouched
        recovered_configuration = read_peers_file(s.data_dir)
        store_class = self.parts.store_class
        self.volume = volume = Volume(s.data_dir, store_class)
        self._encode_command = store_class.encode_command
        self._watch = VolumeWatch(s.data_dir)
        volume.on_backup_stored = lambda meta: loop.call_soon_threadsafe(self.submit, ev.SnapshotTaken(meta))
        volume.on_installed = self._snapshot_installed
        if recovered_configuration is not None:
            volume.recover_cluster(recovered_configuration)
        state = volume.recover()
        self.had_state = bool(state.current_term or state.entries or state.snapshot)

        self.transport = self.parts.transport_class(
            self.id, s.bind_addr, s.raft_port, self._on_message, self.parts.transport_options, log=hclog.emit_fields,
            describe_peer=self._describe_peer,
            snapshot_source=lambda meta: LazySnapshotReader(volume.snapshots, meta),
            snapshot_sink=self._snapshot_sink,
            on_snapshot_failed=lambda peer: self.submit(ev.SnapshotSendFailed(peer)),
        )
        await self.transport.start()
        self._network.transport = self.transport
        net_log.info("transport listening", bind=f"{s.bind_addr}:{s.raft_port}", advertise=self.raft_address,
                     tls=self.tls is not None)
        if not s.raft_port_key and self.tls is None:
            fix = ("hashicorp's protocol has neither: keep the port on a trusted network" if s.protocol == "hashicorp"
                   else 'set RAFT_CLUSTER_KEY or RAFT_TLS_* (README, "Cluster key")')
            net_log.warn(f"the Raft port is unauthenticated: anyone who can reach {s.bind_addr}:{s.raft_port} can "
                         f"join the cluster's traffic; {fix}")

        # A seed of our own, so that a trace can rebuild the same generator.
        seed = int.from_bytes(os.urandom(8), "big")
        config, started_at = s.raft_config(), _now_ms()
        self._raft = RaftNode(self.id, self.raft_address, config, state, random.Random(seed), started_at)
        if s.trace_file:
            self._trace = TraceRecorder(s.trace_file)
            self._trace.start(self.id, self.raft_address, config, state, seed, started_at)
            raft_log.warn("recording every step of the Raft core", file=s.trace_file)
        st = self._raft.status()
        self._configuration = st.configuration
        self._name_peers(st.configuration)
        self._leader = (st.leader_id, st.leader_address)
        self._executor = EffectExecutor(GuardedStorage(volume), self._network, KVStateMachine(self), self)
        effects = self._raft.start()
        if self._trace is not None:
            self._trace.step(None, None, effects, self._raft.status())
            self._trace.flush()
        if self.steps.listening:
            self.steps.step(None, effects)
        await self._carry_out(effects)
        if s.bootstrap and not self.had_state:
            conf = Configuration((Server(self.id, self.raft_address, Suffrage.VOTER),))
            # a lone first server waits to hear whether a cluster already
            # counts it as a member (its volume was wiped: CLEAN=1)
            event = ev.Bootstrap(conf, wait_for_cluster=True, wait_at_least=s.bootstrap_wait)
            effects = self._raft.step(event)
            if self._trace is not None:
                self._trace.step(event, None, effects, self._raft.status())
                self._trace.flush()
            if self.steps.listening:
                self.steps.step(event, effects)
            await self._carry_out(effects)

        self.autopilot = Autopilot(self.raft_status, self.change_membership, s)
        self.spawn(self._drive(), "raftkv-driver")
        self.spawn(self.autopilot.run(), "raftkv-autopilot")
        self.spawn(self._gc_loop(), "raftkv-gc")
        self.spawn(self._watch.run(self._storage_failed), "raftkv-volume-watchdog")
        self._gc.started()

    def spawn(self, coro, name: str) -> None:
        """Run a task for the node's lifetime: cancelled on shutdown, and a
        failure stops the node (exit code 1)."""
        task = self._loop.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            raft_log.error("internal task failed", task=task.get_name(), error="".join(
                           traceback.format_exception_only(type(exc), exc)).strip())
            self.exit_code = 1
            self.request_shutdown()

    def request_shutdown(self) -> None:
        """Ask whoever runs the node (``raftkv.main``) to stop it."""
        self._stop_requested.set()

    async def wait_shutdown_requested(self) -> None:
        await self._stop_requested.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        """Stop driving, fail what is still waiting, close transport and stores."""
        if self._stop_started:
            return
        self._stop_started = self._stopping = True
        self._wake()
        raft_log.info("shutting down")
        try:
            current = asyncio.current_task()
            for task in self._tasks:
                if task is not current:
                    task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # start() may have failed before setting these (see NodeFields)
            requests: PendingRequests | None = getattr(self, "_requests", None)
            if requests is not None:
                requests.fail_all(ShuttingDown("node is shutting down", unknown_outcome=True))
            self._proposals.clear()
            self._inbox.clear()
            transport: Transport | None = getattr(self, "transport", None)
            if transport is not None:
                await transport.close()
            if self._snapshot_task is not None:
                await asyncio.gather(self._snapshot_task, return_exceptions=True)
            volume: Volume | None = getattr(self, "volume", None)
            if volume is not None:
                close = volume.close if self._storage_failure is None else self._abandon_volume
                await self._loop.run_in_executor(self._disk, close)
            if self._trace is not None:
                self._trace.close()
        except Exception as exc:
            raft_log.error("failed to shut down cleanly", error=str(exc))
            self.exit_code = self.exit_code or 1
        finally:
            self._disk.shutdown(wait=False)
            self._snap_pool.shutdown(wait=False)

    async def abort(self) -> None:
        """Undo a start that failed half-way (ports in use, a bad volume)."""
        # the node's tasks may be running already (the HTTP side failed to
        # start): none of them may act, or report on, the volume closed here
        self._stop_started = self._stopping = True
        for task in self._tasks:
            task.cancel()
        # start() may have failed before setting these (see NodeFields)
        transport: Transport | None = getattr(self, "transport", None)
        if transport is not None:
            try:
                await transport.close()
            except Exception:
                pass
        volume: Volume | None = getattr(self, "volume", None)
        if volume is not None:
            volume.abort()

    async def _gc_loop(self) -> None:
        period = max(0.1, min(1.0, self.settings.heartbeat_timeout / 2000))
        while True:
            await asyncio.sleep(period)
            self._gc.tick()

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

    def _name_peers(self, configuration: Configuration) -> None:
        # hashicorp/raft 1.1.2 names the sender of an RPC by address only: a
        # transport speaking it must know each member's id before the first
        # request comes in, or a restarted follower would not recognise a
        # candidate (votes refused as "not in configuration")
        self.transport.learn_configuration(configuration)

    def _describe_peer(self, peer_id: str) -> str:
        server = self._configuration.get(peer_id)
        return str(server) if server else peer_id

    # ------------------------------------------------------------------ the driver

    async def _drive(self) -> None:
        loop = self._loop
        raft = self._raft
        while not self._stopping:
            if not self._inbox and not self._proposals:
                delay = (raft.next_deadline() - _now_ms()) / 1000
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
            self._read_batch = self._lease_batch = None
            if self._proposals:
                events.append(ev.ProposeBatch(tuple(self._proposals)))
                self._proposals = []
            for event in events:
                effects.extend(self._step(event))
            if self.lease_listener is not None:
                self._tell_lease(self.lease_listener)
            if self._trace is not None:
                self._trace.flush()
            if effects:
                await self._carry_out(effects)

    def _tell_lease(self, listener: Callable[[tuple[int, int]], None]) -> None:
        lease = self._raft.read_lease()
        if lease != self._lease_told:
            self._lease_told = lease
            listener(lease)

    def _step(self, event) -> list:
        try:
            effects = self._raft.step(event)
        except Exception as exc:
            # A bug, or input the core could not digest; the node's state is
            # still what the core left, so keep serving and say what happened.
            # log_fields: "event" is the message's own keyword in error()
            raft_log.log_fields("ERROR", "failed to process event",
                                [("event", type(event).__name__), ("error", f"{type(exc).__name__}: {exc}")])
            if hclog.is_enabled("DEBUG"):
                raft_log.debug("traceback", trace=traceback.format_exc())
            if self._trace is not None:
                self._trace.step(event, None, [], self._raft.status(), exc)
            if self.steps.listening:
                self.steps.step(event, [])
            return []
        if self._trace is not None:
            self._trace.step(event, None, effects, self._raft.status())
        if self.steps.listening:
            self.steps.step(event, effects)
        return effects

    async def _carry_out(self, effects: list) -> None:
        executor = self._executor
        ready = executor.prepare(effects)
        executor.send_early(ready, self._role == LEADER)
        if ready.persist:
            try:
                if self._role != LEADER and _small_append(ready.persist):
                    # A follower under light load: its ack, which the leader
                    # waits for, waits for this write anyway, and writing it
                    # here spares two thread hand-offs on that path. Under
                    # load (bigger batches) the thread lets the next
                    # AppendEntries be read meanwhile.
                    self._persist(ready)
                else:
                    await self._loop.run_in_executor(self._disk, self._persist, ready)
            except VolumeFailure as failure:
                # Raft cannot go on without its disk: never send or ack
                # anything that might not be durable.
                self._storage_failed(failure)
                return
            except Exception as exc:
                raft_log.error("failed to persist, shutting down", error=f"{type(exc).__name__}: {exc}")
                self.exit_code = 1
                self._stopping = True  # the driver stops before the next step
                self.request_shutdown()
                return
            if self._storage_failure is not None:
                return  # the watchdog found the volume gone while this was written
            if self.steps.listening:
                self.steps.persisted()
        try:
            executor.finish(ready)
        except VolumeFailure as failure:  # the state machine's file
            self._storage_failed(failure)

    def _persist(self, ready) -> None:
        self._executor.persist(ready)
        # What was just written went to whatever directory the path names
        # now; only if that is still this node's volume may it be acknowledged.
        self._watch.raise_if_lost()

    def _storage_failed(self, failure: VolumeFailure) -> None:
        """The volume failed or went away: from now on nothing is
        acknowledged or served from it, what waits fails with the reason,
        and the process exits with EXIT_STORAGE_FAILED. One ERROR line."""
        if self._storage_failure is not None or self._stop_started:
            return
        if not failure.lost:
            # a write into a directory that is gone fails too (ENOENT ...):
            # name the cause, not the symptom
            failure = self._watch.check() or failure
        self._storage_failure = failure
        self._stopping = True  # before the line: whoever reads it finds the node refusing
        raft_log.error(failure.headline, path=failure.path, error=failure.error)
        self.exit_code = EXIT_STORAGE_FAILED
        self._requests.fail_all(failure.request_error(unknown_outcome=True))
        self._wake()
        self.request_shutdown()

    def _abandon_volume(self) -> None:
        """(disk thread) Close a failed volume quietly and without a last
        commit of the state machine: its open transaction may hold part of a
        batch (see KVStore.abandon)."""
        self.volume.kv.abandon()
        self.volume.abort()

    def _snapshot_sink(self, from_id: str, meta: SnapshotMeta) -> ReportingSink:
        """Where the transport writes a snapshot received from the leader."""
        path = os.path.abspath(self.volume.snapshots.dir)

        def report(failure: VolumeFailure) -> None:  # from the transport's worker thread
            self._loop.call_soon_threadsafe(self._storage_failed, failure)
        try:
            writer = self.volume.snapshots.create(meta)
        except (OSError, sqlite3.Error) as exc:
            self._storage_failed(io_failure(exc, path))
            raise
        return ReportingSink(ReceivedSnapshot(writer, meta.size), path, report)

    # ------------------------------------------------------------------ views

    @property
    def leader_id(self) -> str | None:
        return self._leader[0]

    @property
    def leader_address(self) -> str | None:
        return self._leader[1]

    @property
    def applied_index(self) -> int:
        """The highest index applied to the state machine (what another
        process reading its file sees once the batch is committed)."""
        return self.volume.kv.applied_index

    @property
    def state_machine_path(self) -> str:
        """The SQLite file of the state machine, for read-only readers in
        other processes (``raftkv.statemachine.kvstore.KVReader``)."""
        return self.volume.kv.path

    @property
    def configuration(self) -> Configuration:
        return self._configuration

    def committed_in_term(self) -> bool:
        """(Leader) this term's first entry is committed: reads and writes of
        this leader reflect every earlier acknowledged write."""
        return self._raft.status().committed_in_term

    def raft_status(self) -> NodeStatus:
        """The core's frozen view of itself (hashicorp Stats())."""
        return self._raft.status()

    def status(self) -> dict:
        """hashicorp Stats()-style state of this node, as ``/status`` serves it."""
        return status_view(self._raft.status(), node_id=self.id, stopping=self._stopping,
                           applied=self.volume.kv.applied_index, raft_address=self.raft_address,
                           http_address=self.http_address, num_keys=self.user_key_count(),
                           fault_injection=self.faults is not None)

    def user_key_count(self) -> int:
        """Keys in the state machine, less raftkv's own (reserved) ones."""
        kv = self.volume.kv
        return max(0, len(kv) - kv.count_prefix(RESERVED_PREFIX))

    def peers(self) -> list[dict]:
        """Every server of the configuration with what this node knows of it
        (:func:`~raftkv.node.views.peers_view`)."""
        return peers_view(self._raft.status(), self.id, self.settings)

    def log_view(self) -> "LogView":
        """The in-memory Raft log as it stands, for the dashboard."""
        return LogView(self._raft)

