"""The node as its effect executor's host: what the runtime does with what the core decided.

Theory of operation: the :class:`~raftkv.node.executor.EffectExecutor` carries
out a step's effects in the order the core needs (persist, send, apply, hand
over) and calls back its host for the rest: log a line, count a message,
resolve a request, note a new role or configuration, take a snapshot.
:class:`ExecutorHost` is that host, mixed into :class:`~raftkv.node.runtime.Node`;
:class:`KVStateMachine` applies committed entries to the SQLite store, one
transaction a batch, and :class:`TransportNetwork` hands messages to the
transport.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence

from raftkv.observability import hclog
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.messages import Entry, EntryType, Message, SnapshotMeta
from raftkv.raft.node import LEADER
from raftkv.statemachine.commands import CommandError, describe_command
from raftkv.transport.contract import Transport

from .disk.watchdog import as_volume_failure, io_failure
from .fields import NodeFields

__all__ = ["ExecutorHost", "KVStateMachine", "TransportNetwork"]

raft_log = hclog.get_logger("raft")
fsm_log = hclog.get_logger("fsm")


class KVStateMachine:
    """The executor's state machine: the SQLite store, one transaction per batch."""

    def __init__(self, node) -> None:
        self.node = node

    def apply(self, entries: Sequence[Entry]) -> list:
        t0 = time.perf_counter()
        volume = self.node.volume
        kv = volume.kv
        applied_before = kv.applied_index
        results = []
        try:
            for entry in entries:
                if entry.type is EntryType.COMMAND:
                    results.append(kv.apply(entry.index, entry.data))
                else:
                    kv.mark_applied(entry.index)
                    results.append(None)
            if self.node.applied_listener is not None:
                # before the commit: a reader that finds the file past its
                # view looks again, so no read misses what another one saw
                self.node.applied_listener(kv.applied_index, kv.changed_index)
            kv.commit()
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, os.path.abspath(kv.path)) from exc
        volume.stable.set_commit_hint(entries[-1].index)
        metrics = self.node.metrics
        if metrics is not None:
            metrics.fsm_apply.observe(time.perf_counter() - t0)
        if hclog.is_enabled("DEBUG"):  # one check per batch: free at INFO
            _log_applied_writes(entries, results, applied_before)
        return results


def _log_applied_writes(entries: Sequence[Entry], results: list, applied_before: int) -> None:
    """LOG_LEVEL=DEBUG: one line per write this node's state machine applied
    (the moment the seed's demo printed "Set handler called"), on every node."""
    for entry, result in zip(entries, results):
        if (entry.type is EntryType.COMMAND and entry.index > applied_before
                and not isinstance(result, CommandError)):
            fsm_log.log_fields("DEBUG", "applied write", [
                ("index", entry.index), ("term", entry.term), *describe_command(entry.data)])


class TransportNetwork:
    """The executor's network: the transport (set once it is listening)."""

    transport: Transport

    def send(self, to: str, address: str, message: Message) -> None:
        self.transport.send(to, address, message)


class ExecutorHost(NodeFields):
    """Mixed into Node: the executor's callbacks."""

    def log(self, effect: fx.Log) -> None:
        hclog.log_effect(effect)

    def sent(self, to: str, message: Message) -> None:
        if self.metrics is not None:
            self.metrics.sent(to, message)

    def applied(self, entries: Sequence[Entry], results: list) -> None:
        self._requests.applied(entries, results)

    def resolve(self, effect) -> None:
        self._requests.resolve(effect)

    def state_changed(self, e: fx.StateChanged) -> None:
        if self.metrics is not None:
            self.metrics.role_changed(e.role, e.term)
        was = self._role
        self._role = e.role
        self._leader = (e.leader_id, e.leader_address)
        if was == LEADER and e.role != LEADER:
            self._requests.leadership_lost(e.leader_id, e.leader_address)
        event, self._state_event = self._state_event, asyncio.Event()
        event.set()

    def configuration_changed(self, e: fx.ConfigurationChanged) -> None:
        gone = set(self._configuration.ids) - set(e.configuration.ids) - {self.id}
        self._configuration = e.configuration
        self._name_peers(e.configuration)
        for peer_id in gone:
            self._loop.create_task(self.transport.disconnect(peer_id))

    def compacted(self) -> None:
        self._gc.compacted()

    def take_snapshot(self, meta: SnapshotMeta) -> None:
        # A snapshot still being written does not stop this one: the state is
        # captured now and the single snapshot thread writes them in order.
        if self.metrics is not None:
            self.metrics.snapshot_create.inc()
        kv = self.volume.kv
        if kv.applied_index != meta.index:
            raft_log.error("failed to take snapshot",
                           error=f"state machine is at {kv.applied_index}, not {meta.index}")
            return
        persist = kv.snapshot()  # the consistent view, captured now
        self._snapshot_task = self._loop.create_task(self._write_snapshot(meta, persist))

    async def _write_snapshot(self, meta: SnapshotMeta, persist) -> SnapshotMeta:
        try:
            stored = await self._loop.run_in_executor(self._snap_pool, self.volume.write_snapshot, meta, persist)
        except Exception as exc:
            failure = as_volume_failure(exc, os.path.abspath(self.volume.snapshots.dir))
            if failure is not None:
                self._storage_failed(failure)
            else:
                raft_log.error("failed to take snapshot", error=str(exc))
            raise
        self.submit(ev.SnapshotTaken(stored))
        return stored

    def _snapshot_installed(self) -> None:
        if self.metrics is not None:
            self.metrics.snapshot_installed.inc()
        if self.applied_listener is not None:
            # a leader's snapshot replaced the keys with no apply batch to say
            # so: readers of the file learn it now, not at the next batch (a
            # restored backup is told by its no-op, before it is acknowledged)
            kv = self.volume.kv
            self.applied_listener(kv.applied_index, kv.changed_index)
