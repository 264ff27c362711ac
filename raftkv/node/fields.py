"""What the parts of :class:`~raftkv.node.runtime.Node` share: its fields, and
the methods one part calls on another.

Theory of operation: Node is put together from mixins: the lifecycle and the
driver (:mod:`.runtime`), the executor's host (:mod:`.host`) and the requests
the HTTP side makes (:mod:`.api`). Each mixin reads and changes the node's
state and calls methods another part defines. :class:`NodeFields`, their
common base, declares all of that in one place, as
:class:`raftkv.raft.fields.NodeFields` does for the core's parts, so a reader
of one mixin finds what ``self`` holds, and mypy checks every use.
The declarations cost nothing at run time: the fields are annotations only
(``Node.__init__`` and ``Node.start`` assign them), the methods are declared
for the type checker alone (the real ones come earlier in Node's method
resolution order), and the types are imported for it alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    from collections.abc import Callable

    from raftkv.config.settings import NodeSettings
    from raftkv.config.tls import TlsContexts
    from raftkv.learn.live import StepTap
    from raftkv.observability.metrics import NodeMetrics
    from raftkv.raft import events as ev
    from raftkv.raft.configuration import Configuration
    from raftkv.raft.messages import SnapshotMeta
    from raftkv.raft.node import RaftNode
    from raftkv.transport.contract import Transport
    from raftkv.transport.faults import FaultInjector

    from .build import Parts
    from .disk.volume import Volume
    from .disk.watchdog import VolumeFailure, VolumeWatch
    from .executor import EffectExecutor
    from .policies.autopilot import Autopilot
    from .policies.gcpolicy import GcPolicy
    from .requests import PendingRequests
    from .trace import TraceRecorder

__all__ = ["NodeFields"]


class NodeFields:
    # who and where, and what it was handed
    settings: NodeSettings
    parts: Parts
    tls: TlsContexts | None
    id: str
    raft_address: str
    http_address: str
    metrics: NodeMetrics | None
    faults: FaultInjector | None
    exit_code: int
    had_state: bool
    # Set by start(), and absent before it: the core, the volume and its
    # watch, the transport, the executor, the requests, autopilot and the
    # event loop. What may run before start() or after a start that failed
    # half-way (stop(), abort(), the StepTap's look at the core) looks for
    # them with getattr(..., None).
    _raft: RaftNode
    volume: Volume
    _watch: VolumeWatch
    transport: Transport
    _executor: EffectExecutor
    _requests: PendingRequests
    autopilot: Autopilot
    _loop: asyncio.AbstractEventLoop
    # set once the volume failed or went away: the node serves nothing more
    _storage_failure: VolumeFailure | None
    # the threads the disk and snapshots are written on
    _disk: concurrent.futures.ThreadPoolExecutor
    _snap_pool: concurrent.futures.ThreadPoolExecutor
    # what waits for the driver
    _inbox: list
    _read_batch: asyncio.Future | None
    _lease_batch: asyncio.Future | None
    lease_listener: Callable[[tuple[int, int]], None] | None
    applied_listener: Callable[[int, int], None] | None
    _lease_told: tuple[int, int]
    _proposals: list[ev.Propose]
    _encode_command: Callable[[bytes], bytes]
    _waiter: asyncio.Future | None
    _snapshot_task: asyncio.Task[SnapshotMeta] | None
    # the node's life
    _state_event: asyncio.Event
    _stopping: bool
    _stop_started: bool
    _stop_requested: asyncio.Event
    _tasks: list[asyncio.Task]
    # what the core's effects said last
    _configuration: Configuration
    _role: str
    _leader: tuple[str | None, str | None]  # (id, Raft address)
    _gc: GcPolicy
    _trace: TraceRecorder | None
    steps: StepTap

    if TYPE_CHECKING:
        # runtime.py
        def submit(self, event) -> None: ...
        def _wake(self) -> None: ...
        def _name_peers(self, configuration: Configuration) -> None: ...
        def _storage_failed(self, failure: VolumeFailure) -> None: ...
        def user_key_count(self) -> int: ...
