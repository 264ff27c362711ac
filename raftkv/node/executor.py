"""The one executor of the Raft core's effect contract, shared by a live
node and the simulator.

Theory of operation
-------------------
``RaftNode.step`` returns effects; the contract (``raftkv/raft/__init__.py``)
says in what order they may be carried out. :class:`EffectExecutor` is that
order, written once:

1. :meth:`EffectExecutor.prepare` sorts one step's (or one batch of steps')
   effects into a :class:`Ready`: the persistence effects, the sends, and
   the rest in the order the core emitted them.
2. :meth:`send_early` lets a leader's ``AppendEntries`` leave while its own
   copy is being written (Raft thesis §10.2.1) — only when the leader's
   persistence is nothing but appends and compaction.
3. :meth:`persist` makes the persistence effects durable, in order, with
   one ``sync`` for all appends. A live node runs it on its disk thread;
   the simulator runs it inline (a crash mid-step drops the whole step
   before it reaches the executor).
4. :meth:`finish` writes the log lines, sends what has not left yet, applies
   committed entries to the state machine, and hands the remaining effects
   (request outcomes, snapshots to take, role and configuration changes) to
   the host.

Storage, network, state machine and host are ``typing.Protocol``s: a live
node (``raftkv/node/runtime.py``) plugs in its files, TCP transport, SQLite
store and request futures. The simulator (``raftkv/sim/cluster.py``) runs
this very executor for every simulated step, with in-memory parts
(``raftkv/sim/storage.py``, ``network.py``, ``state_machine.py``) and its
``SimNode`` as host, and checks the contract as it is carried out: nothing
leaves for state not yet durable, nothing is applied past the durable log,
no read is answered before its index is applied. So the fuzzer and the
scenarios exercise the order written here, not a copy of it.

With a ``trace`` callback the executor narrates durability and application
(``persist term=2 vote=n1``, ``append 3..5 (fsync)``, ``truncate 4..``,
``compact ..32``, ``restore snapshot index=53 term=2``, ``apply 1..5``), the
step a learner most needs to see; the simulator's traces print these lines
prefixed with the node's id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from raftkv.raft import effects as fx
from raftkv.raft.messages import AppendEntries, Entry, Message, SnapshotMeta

__all__ = ["EffectExecutor", "Host", "Network", "Ready", "StateMachine", "Storage"]

_PERSIST = (fx.PersistHardState, fx.AppendToLog, fx.TruncateLog, fx.CompactLog, fx.RestoreSnapshot)
_LEADER_APPEND = (fx.AppendToLog, fx.CompactLog)


class Storage(Protocol):
    """The durable part of a node: hard state, log, snapshots."""

    def set_hard_state(self, term: int, voted_for: str | None) -> None: ...
    def append(self, entries: Sequence[Entry]) -> None: ...
    def truncate_from(self, index: int) -> None: ...
    def compact_through(self, index: int) -> None: ...
    def sync(self) -> None: ...
    def restore_snapshot(self, meta: SnapshotMeta, data: object) -> None:
        """Make the snapshot durable and the state machine's state."""


class Network(Protocol):
    def send(self, to: str, address: str, message: Message) -> None: ...


class StateMachine(Protocol):
    def apply(self, entries: Sequence[Entry]) -> list:
        """Apply committed entries in order; one result per entry."""


class Host(Protocol):
    """What the executor hands back to the runtime that owns it."""

    def log(self, effect: fx.Log) -> None: ...
    def sent(self, to: str, message: Message) -> None: ...
    def applied(self, entries: Sequence[Entry], results: list) -> None: ...
    def resolve(self, effect: fx.Proposed | fx.Rejected | fx.Completed | fx.ReadReady) -> None: ...
    def state_changed(self, effect: fx.StateChanged) -> None: ...
    def configuration_changed(self, effect: fx.ConfigurationChanged) -> None: ...
    def take_snapshot(self, meta: SnapshotMeta) -> None: ...
    def compacted(self) -> None: ...


@dataclass(slots=True)
class Ready:
    """One batch of effects, sorted for carrying out."""
    effects: list
    persist: list = field(default_factory=list)
    sent_early: bool = False


def _span(entries: Sequence[Entry]) -> str:
    first, last = entries[0].index, entries[-1].index
    return str(first) if first == last else f"{first}..{last}"


class EffectExecutor:
    def __init__(self, storage: Storage, network: Network, state_machine: StateMachine, host: Host,
                 trace: Callable[[str], None] | None = None) -> None:
        self.storage = storage
        self.network = network
        self.state_machine = state_machine
        self.host = host
        self.trace = trace

    def prepare(self, effects: list) -> Ready:
        return Ready(effects, [e for e in effects if type(e) in _PERSIST])

    def send_early(self, ready: Ready, leader: bool) -> None:
        """A leader's AppendEntries leave before its own append is durable:
        the followers store them independently, and the leader counts its
        own copy towards commitment only in later steps, which start after
        this write is durable. Nothing else leaves early."""
        if not (leader and ready.persist and all(type(e) in _LEADER_APPEND for e in ready.persist)):
            return
        ready.sent_early = True
        self._send(ready.effects, only_appends=True)

    def persist(self, ready: Ready) -> None:
        """Make the persistence effects durable, in order, with one sync of
        the log for all appends. May run on another thread."""
        storage, trace = self.storage, self.trace
        pending: list = []  # entries appended but not synced yet
        for e in ready.persist:
            t = type(e)
            if t is fx.AppendToLog:
                storage.append(e.entries)
                pending.append(e.entries)
            elif t is fx.PersistHardState:
                storage.set_hard_state(e.term, e.voted_for)
                if trace:
                    trace(f"persist term={e.term} vote={e.voted_for or '-'}")
            elif t is fx.TruncateLog:
                if pending:
                    self._sync(pending)
                storage.truncate_from(e.from_index)
                if trace:
                    trace(f"truncate {e.from_index}..")
            elif t is fx.CompactLog:
                storage.compact_through(e.through_index)
                if trace:
                    trace(f"compact ..{e.through_index}")
            elif t is fx.RestoreSnapshot:
                storage.restore_snapshot(e.meta, e.data)
                if trace:
                    trace(f"restore snapshot index={e.meta.index} term={e.meta.term}")
        if pending:
            self._sync(pending)

    def _sync(self, pending: list) -> None:
        self.storage.sync()
        if self.trace:  # the words are built only for a trace, off the write path
            self.trace(f"append {', '.join(_span(entries) for entries in pending)} (fsync)")
        pending.clear()

    def finish(self, ready: Ready) -> None:
        """Everything after durability, in the order the core emitted it."""
        host = self.host
        effects = ready.effects
        if ready.persist and any(type(e) is fx.CompactLog for e in ready.persist):
            host.compacted()
        # Log lines go out once the state they describe is durable, so that
        # e.g. "Installed remote snapshot" follows the restore it reports.
        for e in effects:
            if type(e) is fx.Log:
                host.log(e)
        self._send(effects, skip_appends=ready.sent_early)
        for e in effects:
            t = type(e)
            if t is fx.Apply:
                self._apply(e.entries)
            elif t is fx.Proposed or t is fx.Rejected or t is fx.Completed or t is fx.ReadReady:
                host.resolve(e)
            elif t is fx.StateChanged:
                host.state_changed(e)
            elif t is fx.ConfigurationChanged:
                host.configuration_changed(e)
            elif t is fx.TakeSnapshot:
                host.take_snapshot(e.meta)

    def _send(self, effects: list, only_appends: bool = False, skip_appends: bool = False) -> None:
        network, host = self.network, self.host
        for e in effects:
            if type(e) is fx.Send:
                is_append = type(e.message) is AppendEntries
                if (only_appends and not is_append) or (skip_appends and is_append):
                    continue
                host.sent(e.to, e.message)
                network.send(e.to, e.address, e.message)

    def _apply(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        results = self.state_machine.apply(entries)
        if self.trace:
            self.trace(f"apply {_span(entries)}")
        self.host.applied(entries, results)
