"""The node's requests: what the HTTP side asks of the Raft core, and how it waits.

Theory of operation: every request (a write, a linearizable read, a membership
change, a leadership transfer, a snapshot, a restore) is started the same way
(:meth:`NodeRequests._request`): registered with
:class:`~raftkv.node.requests.PendingRequests`, its event queued for the
driver, the driver woken, and a timer set that fails it with ``ApplyTimeout``
if the core does not answer in time. Writes go to their own queue, so the
driver proposes everything that arrived since its last step as one batch;
linearizable reads arriving before the driver takes its inbox share one
ReadIndex request. :class:`NodeRequests` is mixed into
:class:`~raftkv.node.runtime.Node`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand, Configuration
from raftkv.raft.errors import RejectReason
from raftkv.raft.messages import SnapshotMeta
from raftkv.raft.node import LEADER
from raftkv.statemachine.kvstore import KVStore, SnapshotFormatError

from .errors import BadBackup, NotLeaderError, RequestError, ShuttingDown
from .fields import NodeFields
from .views import readiness_view

__all__ = ["NodeRequests"]


def _retrieved(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # a renewal nobody waits for: its failure is not an error to report


class _CommitTimer:
    """Observes how long a proposal took to commit and apply, when it ends."""

    __slots__ = ("histogram", "t0")

    def __init__(self, histogram) -> None:
        self.histogram = histogram
        self.t0 = time.perf_counter()

    def __call__(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.histogram.observe(time.perf_counter() - self.t0)


class NodeRequests(NodeFields):
    """Mixed into Node: the requests the HTTP side makes."""

    def _request(self, event_type, args: tuple, what: str, timeout: float | None, *,
                 queue: list | None = None, unknown_outcome: bool = True) -> asyncio.Future:
        """Start a request of the core: register it, queue its event for the
        driver (``queue``: the inbox unless said), wake the driver, and fail
        the request with ApplyTimeout if no answer comes within ``timeout``
        (``what`` names what it waited for). Refused once the node stops."""
        if self._stopping:
            raise self._refusal()
        rid, fut = self._requests.register()
        (self._inbox if queue is None else queue).append(event_type(rid, *args))
        self._wake()
        self._requests.expire_after(fut, self._timeout(timeout), what, unknown_outcome)
        return fut

    def _refusal(self) -> ShuttingDown:
        """Why a request arriving now is refused (nothing was done)."""
        if self._storage_failure is not None:
            return self._storage_failure.request_error(unknown_outcome=False)
        return ShuttingDown("node is shutting down")

    def _timeout(self, timeout: float | None) -> float:
        return self.settings.apply_timeout / 1000 if timeout is None else timeout

    def _check_leader(self) -> None:
        if self._role != LEADER:
            raise NotLeaderError("node is not the leader", False, *self._leader, reason=RejectReason.NOT_LEADER)

    @property
    def is_leader(self) -> bool:
        return self._role == LEADER

    async def propose(self, data: bytes, timeout: float | None = None) -> tuple[int, Any]:
        """Replicate a command; returns (index, state machine result) once applied."""
        return await self.propose_nowait(data, timeout)

    def propose_nowait(self, data: bytes, timeout: float | None = None) -> asyncio.Future:
        """:meth:`propose` as a future of (index, result), for callers that
        answer from a callback instead of a coroutine (the HTTP fast path).
        Raises NotLeaderError at once on a follower."""
        self._check_leader()
        fut = self._request(ev.Propose, (self._encode_command(data),), "the write to commit", timeout,
                            queue=self._proposals)
        if self.metrics is not None:
            fut.add_done_callback(_CommitTimer(self.metrics.commit_time))
        return fut

    async def read_barrier(self, timeout: float | None = None, *, lease: bool = False) -> int:
        """ReadIndex: returns once a linearizable read may be served locally
        (``lease``: at once while the leader holds a read lease)."""
        # shielded: the batch is shared, a cancelled reader must not cancel it
        return await asyncio.shield(self.read_barrier_nowait(timeout, lease=lease))

    def read_barrier_nowait(self, timeout: float | None = None, *, lease: bool = False) -> asyncio.Future:
        """The future of the read index a linearizable read arriving now may be
        served at (the state machine has applied it when the future is done).
        Reads arriving before the driver takes its inbox share one ReadIndex
        request and one future (lease reads another). On a follower the core
        asks the leader for the index (follower reads); raises NotLeaderError
        at once where there is no leader to ask."""
        if self._role != LEADER and not (self._raft.config.follower_reads and self._leader[0]):
            self._check_leader()
        batch = self._lease_batch if lease else self._read_batch
        if batch is None or batch.done():
            # a read changes nothing: its timeout says the outcome is known
            batch = self._request(ev.ReadIndex, (lease,), "leadership confirmation", timeout, unknown_outcome=False)
            if lease:
                self._lease_batch = batch
            else:
                self._read_batch = batch
        return batch

    def serve_under_lease(self) -> bool:
        """Whether a lease read arriving now may be served from this node's
        state at once, with no step of the core: it leads under a read lease
        (RaftNode.read_lease), and its state machine holds every entry of
        earlier terms, and every write of its own it acknowledged (a write
        is acknowledged once applied). Once half the lease is gone it also
        asks the core for a lease read, which renews the lease. False while
        the learning view watches the steps: a lease read then goes through
        the core, where it can be seen."""
        if self._role != LEADER or self.steps.listening or self._stopping:
            return False
        until, floor = self._raft.read_lease()
        left = until - time.monotonic() * 1000
        if left <= 0 or self.volume.kv.applied_index < floor:
            return False
        if left < self._raft.lease_rules.duration / 2 and self._lease_batch is None:
            self.read_barrier_nowait(lease=True).add_done_callback(_retrieved)
        return True

    def leader_contact_age(self) -> int | None:
        """Milliseconds since this node last heard from a leader (0 on the
        leader itself); None if it knows of none."""
        contact = self._raft.last_contact()
        if contact <= 0:
            return None if contact < 0 else 0
        return max(0, int(time.monotonic() * 1000) - self._raft.last_leader_contact)

    def readiness(self, upto: int | None = None) -> dict:
        """``/readyz``'s body (:func:`~raftkv.node.views.readiness_view`);
        ``upto`` caps the index it must have applied."""
        applied = 0 if self._stopping else self.volume.kv.applied_index  # a stopped node's file may be closed
        return readiness_view(self._raft.status(), applied=applied, contact_age=self.leader_contact_age(),
                              stale_after=self.settings.heartbeat_timeout, stopping=self._stopping, upto=upto)

    def get_local(self, key: str) -> str | None:
        """The value in this node's state machine (a stale read, or a
        linearizable one after ``read_barrier``). Refused once the node
        stops: its volume may be gone (then the file read is not the node's
        any more) or being closed."""
        if self._stopping:
            raise self._refusal()
        return self.volume.kv.get(key)

    async def change_membership(self, command: ConfigCommand, server_id: str, address: str = "",
                                timeout: float | None = None) -> int:
        self._check_leader()
        index, _ = await self._request(ev.ChangeMembership, (command, server_id, address),
                                       "the configuration change to commit", timeout)
        return index

    async def transfer_leadership(self, target: str | None, timeout: float | None = None) -> None:
        self._check_leader()
        await self._request(ev.TransferLeadership, (target,), "the leadership transfer", timeout)

    def bootstrap(self, configuration: Configuration) -> None:
        """Found a cluster of ``configuration``'s voters (RAFT_BOOTSTRAP_EXPECT,
        where every founder passes the same one); the core skips it on a node
        that holds any state by then."""
        self.submit(ev.Bootstrap(configuration))

    async def snapshot_now(self, timeout: float | None = None) -> SnapshotMeta:
        await self._request(ev.RequestSnapshot, (), "the snapshot to start", timeout)
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
            if exc.reason is not RejectReason.NOTHING_TO_SNAPSHOT:
                raise
        opened = await self._loop.run_in_executor(self._snap_pool, self.volume.snapshots.latest_valid)
        if opened is None:
            raise RequestError("no snapshot to send")
        return opened

    def snapshot_crc(self, snapshot_id: str) -> int:
        return self.volume.snapshots.crc_of(snapshot_id)

    def upload_file(self) -> tuple[int, str]:
        """A new file in the volume for an uploaded backup: (fd, path)."""
        return self.volume.upload_file()

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
        index, _ = await self._request(ev.RestoreUserSnapshot, (backup,), "the restored state to commit", timeout)
        return index - 1, self.user_key_count()

    async def wait_state_change(self, timeout: float) -> None:
        """Return when the role/term/leader changes, or after ``timeout``."""
        event = self._state_event
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
        except TimeoutError:
            pass
