"""What the HTTP side may call on a node: the one contract between
``raftkv/http/`` and the runtime.

:class:`NodeHandle` declares every attribute and method the HTTP side uses
on a node, and nothing else: the routes, the registry of HTTP addresses,
the link to the HTTP workers, the pages and the service that starts them
all hold a node as a ``NodeHandle``. :class:`raftkv.node.runtime.Node`
satisfies it.

:class:`KeyValueNode` is the part the data plane needs -- reads and writes
of keys (:mod:`raftkv.http.api.kv`) -- and all an HTTP worker has: its
stand-in, :class:`raftkv.http.workers.worker.WorkerNode`, reads the state
machine's file and sends the rest to the Raft process over the local link.

tests/http/test_handle.py holds the contract to both: mypy checks that
``Node`` is a ``NodeHandle`` and ``WorkerNode`` a ``KeyValueNode``, and the
source of ``raftkv/http/`` calls nothing on a node that is not declared here.

Failures are the exceptions of :mod:`raftkv.node.errors` (a refusal, a
timeout, a node that stops), which :mod:`raftkv.http.api.replies` turns
into answers. A ``*_nowait`` call raises ``NotLeaderError`` at once on a
node that does not lead and otherwise returns a future, for callers that
answer from a callback instead of a coroutine (the fast path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from raftkv.learn.live import StepTap
from raftkv.raft.configuration import ConfigCommand, Configuration
from raftkv.raft.messages import Entry, SnapshotMeta
from raftkv.transport.faults import FaultInjector

__all__ = ["KeyValueNode", "LogTail", "NodeHandle"]


class KeyValueNode(Protocol):
    """Reads and writes of keys: what the data plane calls."""

    @property
    def id(self) -> str: ...

    @property
    def is_leader(self) -> bool: ...

    def get_local(self, key: str) -> str | None:
        """The value in this node's state machine, as it is now: a stale
        read, or a linearizable one once a read barrier is done."""

    async def read_barrier(self, *, lease: bool = False) -> int:
        """ReadIndex: returns the index a linearizable read arriving now may
        be served at, once the state machine has applied it (``lease``: at
        once while the leader holds a read lease)."""

    def read_barrier_nowait(self, *, lease: bool = False) -> asyncio.Future[Any]:
        """:meth:`read_barrier` as a future (shared by the reads of a batch:
        never cancel it)."""

    def serve_under_lease(self) -> bool:
        """Whether a ``level=lease`` read arriving now may be served from
        this node's state at once (the leader's read lease holds, and its
        state holds every acknowledged write); renews the lease on the way
        when half of it is gone."""

    def leader_contact_age(self) -> int | None:
        """Milliseconds since this node last heard from a leader (0 on the
        leader); None if it knows of none."""

    async def propose(self, data: bytes) -> tuple[int, Any]:
        """Replicate a state-machine command; ``(index, result)`` once applied."""

    def propose_nowait(self, data: bytes) -> asyncio.Future[Any]:
        """:meth:`propose` as a future of ``(index, result)``."""


class LogTail(Protocol):
    """A read-only look at the node's in-memory Raft log (``/debug/log``, the
    dashboard's streams)."""

    @property
    def first_index(self) -> int: ...

    @property
    def last_index(self) -> int: ...

    @property
    def base_index(self) -> int: ...

    @property
    def base_term(self) -> int: ...

    @property
    def commit_index(self) -> int: ...

    def term_at(self, index: int) -> int | None: ...

    def entries(self, lo: int, hi: int) -> Sequence[Entry]: ...


class NodeHandle(KeyValueNode, Protocol):
    """Everything the HTTP side calls on a node (the data plane's calls, of
    :class:`KeyValueNode`, included)."""

    # -- where it serves, and who leads

    @property
    def http_address(self) -> str: ...

    @property
    def raft_address(self) -> str: ...

    @property
    def leader_id(self) -> str | None: ...

    @property
    def leader_address(self) -> str | None: ...

    def committed_in_term(self) -> bool:
        """(Leader) this term's first entry is committed."""

    # -- the state machine, for an HTTP worker reading its file

    @property
    def applied_index(self) -> int: ...

    @property
    def state_machine_path(self) -> str: ...

    # told the core's read lease (until, floor) as it changes, before the
    # messages of the steps that changed it leave (the HTTP workers' lease board)
    lease_listener: Callable[[tuple[int, int]], None] | None
    # told the applied index and the highest one that changed keys as the
    # state machine's file is about to hold them, so before the writes they
    # cover are acknowledged (the same board)
    applied_listener: Callable[[int, int], None] | None

    # -- membership

    @property
    def configuration(self) -> Configuration:
        """The latest configuration this node knows."""

    async def change_membership(self, command: ConfigCommand, server_id: str, address: str = "") -> int:
        """(Leader) add, promote or remove a server; the change's index once committed."""

    async def transfer_leadership(self, target: str | None) -> None:
        """(Leader) hand leadership to ``target`` (None: the most up-to-date voter)."""

    def bootstrap(self, configuration: Configuration) -> None:
        """Found a cluster of these voters, unless the node holds state by then."""

    # -- snapshots, backup and restore

    async def snapshot_now(self) -> SnapshotMeta: ...

    async def latest_snapshot(self) -> tuple[SnapshotMeta, Any]:
        """A snapshot holding every write applied so far, and its file opened for reading."""

    def snapshot_crc(self, snapshot_id: str) -> int: ...

    def upload_file(self) -> tuple[int, str]:
        """A new file in the volume for an uploaded backup: ``(fd, path)``."""

    async def restore_backup(self, path: str) -> tuple[int, int]:
        """(Leader) the backup at ``path`` becomes the cluster's state: ``(index, keys)``."""

    # -- views

    def status(self) -> dict[str, Any]:
        """``/status``'s body."""

    def peers(self) -> list[dict[str, Any]]:
        """``/peers``' rows."""

    def readiness(self, upto: int | None = None) -> dict[str, Any]:
        """``/readyz``'s body: ``ready``, and the ``reason`` when not
        (``upto`` caps the index it must have applied)."""

    def log_view(self) -> LogTail: ...

    @property
    def faults(self) -> FaultInjector | None:
        """With ``RAFT_FAULT_INJECTION``: the transport's fault rules."""

    @property
    def steps(self) -> StepTap:
        """The core's steps as they happen, for ``/debug/steps``."""

    # -- the node's life

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def had_state(self) -> bool:
        """The volume held Raft state at start (a restart: no joining)."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a task for the node's lifetime."""

    async def wait_state_change(self, timeout: float) -> None:
        """Return when the role, term or leader changes, or after ``timeout``."""
