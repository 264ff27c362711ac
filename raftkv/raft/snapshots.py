"""Local snapshots and user restores: a part of :class:`~raftkv.raft.node.RaftNode`.

Theory of operation: the :class:`~raftkv.raft.snapshot_policy.SnapshotPolicy`
says when; the node then asks the runtime for ``TakeSnapshot`` at exactly
``last_applied`` (rule 5 makes that the state machine's state) and, once the
runtime reports it stored, compacts the log as far as the policy allows. A
user's backup (``RestoreUserSnapshot``) becomes a snapshot one past the
leader's last index, which every follower then receives by InstallSnapshot.
"""

from __future__ import annotations

from . import effects as fx
from . import events as ev
from .errors import RejectReason
from .fields import NodeFields
from .messages import Entry, EntryType, SnapshotMeta


class Snapshots(NodeFields):
    """Mixed into RaftNode; reads and changes its fields."""

    def _take_snapshot(self) -> None:
        if self.last_applied <= self.snapshot.index:
            return
        self._log("INFO", "starting snapshot up to", ("index", self.last_applied))
        self.snapshot_policy.asked(self.last_applied)
        self._emit(fx.TakeSnapshot(SnapshotMeta(
            self.last_applied, self.log.term_at(self.last_applied) or self.snapshot.term,
            self.committed_configuration, self.committed_configuration_index)))

    def _on_snapshot_requested(self, event: ev.RequestSnapshot) -> None:
        if self.last_applied <= self.snapshot.index:
            self._reject(event.request_id, RejectReason.NOTHING_TO_SNAPSHOT, "nothing new to snapshot")
            return
        self._take_snapshot()
        self._emit(fx.Completed(event.request_id))

    def _on_snapshot_taken(self, event: ev.SnapshotTaken) -> None:
        meta = event.meta
        if meta.index == self.snapshot.index and meta.term == self.snapshot.term and not self.snapshot.id:
            self.snapshot = meta  # the runtime stored a restored backup: learn its id and size
            return
        if meta.index <= self.snapshot.index:
            return
        self.snapshot = meta
        to = self.snapshot_policy.compaction_point(self.log, meta.index)
        if to >= self.log.first_index:
            self._log("INFO", "compacting logs", ("from", self.log.first_index), ("to", to))
            self._emit(fx.CompactLog(to))
            self.log.compact_through(to)
        elif self.log.last_index > self.config.trailing_logs:
            self._log("INFO", "no logs to truncate")
        self._log("INFO", "snapshot complete up to", ("index", meta.index))

    def _on_restore_requested(self, event: ev.RestoreUserSnapshot) -> None:
        leader = self._leader_for_change(event.request_id)
        if leader is None:
            return
        if not self.committed_in_term() or not self.membership.latest_committed(self.commit_index):
            self._reject(event.request_id, RejectReason.RESTORE_NOT_READY,
                         "cannot restore while the leader's first entry "
                         "or a configuration change is uncommitted; retry")
            return
        # One past the last index, as hashicorp does: no follower has an entry
        # there, so each one is brought over by InstallSnapshot, and a
        # follower's old entries can never be mistaken for the restored state.
        index = self.log.last_index + 1
        meta = SnapshotMeta(index, self.current_term, self.configuration, self.configuration_index)
        self._emit(fx.RestoreSnapshot(meta, event.data))
        if len(self.log):
            self._emit(fx.TruncateLog(self.log.first_index))
        self._emit(fx.CompactLog(index))  # and what the store kept below our first index
        self.log.reset(index, self.current_term)
        self.snapshot = meta
        self.commit_index = self.last_applied = index
        for pr in leader.progress.values():
            pr.become_probe()
        self._log("INFO", "restored user snapshot", ("index", index))
        # The request completes when this no-op commits: by then a quorum holds
        # the restored state (hashicorp's Restore waits the same way).
        noop = Entry(index + 1, self.current_term, EntryType.NOOP)
        self._emit(fx.Proposed(event.request_id, noop.index, noop.term))
        self._append_as_leader([noop])
