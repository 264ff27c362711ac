"""The follower side of replication: a part of :class:`~raftkv.raft.node.RaftNode`.

Theory of operation: a follower accepts AppendEntries from the leader of its
term when its log holds the entry before them (§5.3), truncates a conflicting
suffix (never a committed entry, rule 2), appends what is new and commits up
to what the leader says is committed and it is known to match. Heartbeats
carry no entries and only move the commit index as far as the follower's own
log reaches. An InstallSnapshot replaces the state machine; the log keeps its
suffix only if it continues the snapshot (Fig. 13 rules 6-7); rules.install_snapshot
decides whether to install and what to keep.
"""

from __future__ import annotations

from . import effects as fx
from .fields import NodeFields
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    SnapshotMeta,
)
from .roles import FOLLOWER
from .rules import NO_PREV_ENTRY, PREV_TERM_MISMATCH, AppendDecision, AppendRequest, LogView, SnapshotRequest


class Following(NodeFields):
    """Mixed into RaftNode; reads and changes its fields."""

    def _on_append_entries(self, from_id: str, req: AppendEntries) -> None:
        # Entries at or below our base are committed, hence identical (Log
        # Matching): the rule sees the request from our base on.
        prev_index, prev_term, entries = req.prev_log_index, req.prev_log_term, req.entries
        below_base = False
        if not req.heartbeat and prev_index < self.log.base_index:
            skip = self.log.base_index - prev_index
            entries = entries[skip:]
            prev_index, prev_term = self.log.base_index, self.log.base_term
            below_base = not entries and req.prev_log_index + len(req.entries) < self.log.base_index
        decision = None
        if not req.heartbeat:
            decision = self.rules.append_entries(AppendRequest(
                self.current_term, self.commit_index, LogView(self.log), req.term, req.leader_id,
                prev_index, prev_term, entries, req.leader_commit))
        # a heartbeat carries no log: whether it comes from our term is the core's to say
        stale = not decision.accept_leader if decision is not None else req.term < self.current_term
        if stale:
            self._emit(fx.Send(from_id, req.leader_address,
                               AppendEntriesResponse(self.current_term, False, self.log.last_index,
                                                     req.prev_log_index, heartbeat=req.heartbeat,
                                                     read_seq=req.read_seq, volume=self.volume_id)))
            return
        # Terms never go back (rule 1): a rule that follows an older leader
        # follows it in our term.
        self._follow(max(req.term, self.current_term), req.leader_id, req.leader_address)
        # What this node must apply to be as current as its leader: a lagging
        # follower learns it from an append before it holds the entries. A
        # heartbeat's is capped at what the follower matches, and a new
        # leader may not know its predecessor's yet: neither may lower it,
        # as nothing committed is ever uncommitted.
        self.leader_commit = max(self.leader_commit, req.leader_commit)

        if req.heartbeat or decision is None:
            self._commit_to(min(req.leader_commit, self.log.last_index))
            self._emit(fx.Send(from_id, req.leader_address,
                               AppendEntriesResponse(self.current_term, True, self.log.last_index, 0,
                                                     heartbeat=True, read_seq=req.read_seq,
                                                     volume=self.volume_id)))
            return
        if below_base:
            self._reply_append(from_id, req, True, self.log.base_index)
            return
        if decision.reason == NO_PREV_ENTRY:
            self._log("WARN", "failed to get previous log", ("previous-index", prev_index),
                      ("last-index", self.log.last_index), ("error", "log not found"))
        elif decision.reason == PREV_TERM_MISMATCH:
            self._log("WARN", "previous log term mis-match", ("ours", self.log.term_at(prev_index)),
                      ("remote", prev_term))
        if not decision.success or not self._merge_entries(decision):
            self._reply_append(from_id, req, False)
            return
        self._commit_to(decision.commit_index)
        self._reply_append(from_id, req, True, decision.match_index)

    def _follow(self, term: int, leader_id: str, leader_address: str) -> None:
        """A current leader spoke: follow it and restart the election timer."""
        if self.role != FOLLOWER:
            self._become_follower(term, leader_id, leader_address)
        self.leader_id = leader_id
        self.leader_address = leader_address
        self._state_changed()  # the runtime forwards requests to the leader it names
        self.last_leader_contact = self.now
        self._reset_election_timer()
        if self.voted_for is None and self._amnesia_reason() is not None:
            # A node that lost its volume may have voted in this term before
            # and forgotten it. The leader of the term is the one candidate
            # that vote can safely have gone to: record it, so that once
            # re-admitted the node cannot vote a second time in this term.
            self._set_hard_state(term, leader_id)

    def _merge_entries(self, decision: AppendDecision) -> bool:
        """Carry out the rule's truncation and append (§5.3 steps 3-4); False
        if it would drop a committed entry (rule 2)."""
        if decision.truncate_from is not None:
            last = self.log.last_index
            if decision.truncate_from <= self.commit_index:
                # rule 2: would drop a committed entry; the leader is confused
                self._log("ERROR", "failed to append to logs",
                          ("error", f"conflict at committed index {decision.truncate_from}"))
                return False
            if decision.truncate_from <= last:
                self._log("WARN", "clearing log suffix", ("from", decision.truncate_from), ("to", last))
                self._emit(fx.TruncateLog(decision.truncate_from))
                self.log.truncate_from(decision.truncate_from)
                self._recompute_configuration()
        new = list(decision.append)
        if new:
            self.last_leader_append = self.now   # a leader's lease may rest on these (lease.py)
            self.log.append(new)
            self._emit(fx.AppendToLog(tuple(new)))
            if any(e.type is EntryType.CONFIGURATION for e in new):
                self._recompute_configuration()
                self._configuration_changed()
        return True

    def _reply_append(self, to: str, req: AppendEntries, success: bool, match: int = 0) -> None:
        self._emit(fx.Send(to, req.leader_address,
                           AppendEntriesResponse(self.current_term, success, self.log.last_index,
                                                 req.prev_log_index, match_index=match,
                                                 read_seq=req.read_seq, volume=self.volume_id)))

    def _on_install_snapshot(self, from_id: str, req: InstallSnapshot) -> None:
        meta = req.meta
        decision = self.rules.install_snapshot(SnapshotRequest(
            self.current_term, self.commit_index, LogView(self.log), req.term, req.leader_id, meta.index, meta.term))
        if not decision.accept_leader:
            self._log("INFO", "ignoring installSnapshot request with older term than current term",
                      ("request-term", req.term), ("current-term", self.current_term))
            self._emit(fx.Send(from_id, req.leader_address,
                               InstallSnapshotResponse(self.current_term, False, self.log.last_index,
                                                       self.volume_id)))
            return
        # terms never go back (rule 1), whatever the rule followed
        self._follow(max(req.term, self.current_term), req.leader_id, req.leader_address)
        self.leader_commit = max(self.leader_commit, meta.index)  # a snapshot holds only committed entries
        if decision.install:
            self._install_snapshot(meta, req.data, decision.keep_log_suffix)
        self._emit(fx.Send(from_id, req.leader_address,
                           InstallSnapshotResponse(self.current_term, True, max(meta.index, self.commit_index),
                                                   self.volume_id)))

    def _install_snapshot(self, meta: SnapshotMeta, data: object, keep_log_suffix: bool) -> None:
        self.last_leader_append = self.now
        self._emit(fx.RestoreSnapshot(meta, data))
        had_logs = len(self.log) > 0
        if keep_log_suffix:
            # Fig. 13 rule 6: our entry at the snapshot index matches, keep what follows
            if had_logs:
                self._log("INFO", "compacting logs", ("from", self.log.first_index), ("to", meta.index))
            self._emit(fx.CompactLog(meta.index))
            self.log.compact_through(meta.index)
        else:
            if had_logs:
                self._log("INFO", "compacting logs", ("from", self.log.first_index), ("to", self.log.last_index))
                self._emit(fx.TruncateLog(self.log.first_index))
            # The store may still hold entries below our first index (it frees
            # whole segments only); they must go too, or it could not take the
            # next append at meta.index + 1.
            self._emit(fx.CompactLog(meta.index))
            self.log.reset(meta.index, meta.term)
        self.snapshot = meta
        self.commit_index = meta.index
        self.last_applied = meta.index
        self._recompute_configuration()
        self._configuration_changed()
        self._log("INFO", "Installed remote snapshot")
