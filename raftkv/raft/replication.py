"""The leader side of replication: a part of :class:`~raftkv.raft.node.RaftNode`.

Theory of operation: the leader keeps a :class:`~raftkv.raft.progress.Progress`
per peer and feeds each one as its flow control allows: one probe at a time
until the peer's log is found to match, then pipelined batches, or a snapshot
when the entries it needs were compacted away. Heartbeats go out every
HeartbeatTimeout/10 and also carry the ReadIndex round number; a peer that
could commit more than it was last told gets one after CommitTimeout. The
commit index advances to what a quorum of voters matched, counting only
entries of the leader's own term (rule 3). Every LeaderLeaseTimeout the
leader checks that a quorum answered recently and steps down if not
(check-quorum).
"""

from __future__ import annotations

from datetime import timedelta

from . import effects as fx
from . import events as ev
from .configuration import ConfigCommand
from .effects import Bare
from .errors import RejectReason
from .fields import NodeFields
from .messages import AppendEntries, AppendEntriesResponse, Entry, InstallSnapshot, InstallSnapshotResponse, TimeoutNow
from .progress import Progress, ProgressState
from .roles import LeaderState
from .rules import CommitRequest, LogView, ProgressRequest


class Replication(NodeFields):
    """Mixed into RaftNode; reads and changes its fields."""

    def _leader_tick(self, leader: LeaderState) -> None:
        if self.now >= leader.next_lease_check:
            leader.next_lease_check = self.now + self.config.leader_lease_timeout
            if self.config.check_quorum and not self._check_lease(leader):
                return
        if leader.lease.wait_until and self.now >= leader.lease.wait_until:
            leader.lease.wait_until = 0
            self._log("INFO", "the previous leader's read lease has expired, committing")
            self._maybe_commit(leader)
            if self.leader is not leader:
                return
        if leader.transfer is not None and self.now >= leader.transfer.deadline:
            request_id = leader.transfer.request_id
            leader.transfer = None
            self._log("DEBUG", "leadership transfer timeout")
            self._reject(request_id, RejectReason.TRANSFER_TIMEOUT, "leadership transfer timeout")
        if self.now >= leader.next_heartbeat:
            self._heartbeat(leader)
        else:
            for peer_id, pr in leader.progress.items():
                if self._has_commit_news(pr) and self.now - pr.last_send >= self.config.commit_timeout:
                    self._send_heartbeat(leader, peer_id, pr)

    def _has_commit_news(self, pr: Progress) -> bool:
        """CommitTimeout: the peer could commit more than we last told it."""
        return min(pr.match_index, self.commit_index) > pr.sent_commit

    def _check_lease(self, leader: LeaderState) -> bool:
        """Check-quorum: step down if a quorum of voters went silent."""
        contacted = 1 if self.configuration.is_voter(self.id) else 0
        uncounted = self._uncounted_voters(leader)
        for server in self.configuration.servers:
            if server.id == self.id or not server.is_voter:
                continue
            pr = leader.progress.get(server.id)
            silent = (self.now - pr.last_contact if pr and server.id not in uncounted
                      else self.config.leader_lease_timeout + 1)
            if silent <= self.config.leader_lease_timeout:
                contacted += 1
            else:
                level = "DEBUG" if silent > 3 * self.config.leader_lease_timeout else "WARN"
                self._log(level, "failed to contact", ("server-id", Bare(server.id)),
                          ("time", timedelta(milliseconds=silent)))
        if contacted < self._votes_needed():
            self._log("WARN", "failed to contact quorum of nodes, stepping down")
            self._become_follower(self.current_term, None, None)
            return False
        return True

    def _heartbeat(self, leader: LeaderState) -> None:
        leader.next_heartbeat = self.now + self.config.heartbeat_interval
        for peer_id, pr in leader.progress.items():
            self._send_heartbeat(leader, peer_id, pr)
            if pr.state is ProgressState.SNAPSHOT and \
                    self.now - pr.snapshot_sent_at > 2 * self.config.election_timeout:
                pr.become_probe()  # the snapshot transfer was lost; offer it again

    def _send_heartbeat(self, leader: LeaderState, peer_id: str, pr: Progress) -> None:
        # the commit index is capped by what the peer is known to match, so a
        # follower with a stale suffix never commits entries it may have to drop
        commit = min(pr.match_index, self.commit_index)
        pr.sent_commit = max(pr.sent_commit, commit)
        pr.last_send = self.now
        self._send(peer_id, AppendEntries(self.current_term, self.id, self.address, 0, 0, (), commit,
                                          heartbeat=True, read_seq=leader.read_only.started_seq))

    def _append_as_leader(self, entries: list[Entry]) -> None:
        leader = self.leader
        assert leader is not None  # only a leader appends
        self.log.append(entries)
        self._emit(fx.AppendToLog(tuple(entries)))
        leader.lease.appended(entries[-1].index, self.now)
        for peer_id, pr in leader.progress.items():
            self._replicate_to(peer_id, pr)
        self._maybe_commit(leader)

    def _replicate_to(self, peer_id: str, pr: Progress, allow_empty: bool = False) -> None:
        """Send the next batch to a peer, as far as its flow control allows."""
        while pr.can_send(self.config.max_inflight):
            if pr.next_index <= self.log.base_index:
                self._send_snapshot(peer_id, pr)
                return
            entries = _within_bytes(self.log.slice(pr.next_index, self.log.last_index,
                                                   self.config.max_append_entries), self.config.max_append_bytes)
            if not entries and not allow_empty:
                return
            prev = pr.next_index - 1
            last = entries[-1].index if entries else prev
            pr.sent_commit = max(pr.sent_commit, min(self.commit_index, last))
            self._send(peer_id, AppendEntries(self.current_term, self.id, self.address, prev,
                                              self.log.term_at(prev) or 0, tuple(entries), self.commit_index))
            pr.sent(last, self.now)
            if not entries:
                return
            allow_empty = False

    def _send_snapshot(self, peer_id: str, pr: Progress) -> None:
        self._log("ERROR", "failed to get log", ("index", pr.next_index), ("error", "log not found"))
        if self.snapshot.index == 0:
            return
        self._log("INFO", "opening snapshot", ("id", self.snapshot.id))
        self._log("INFO", "installing snapshot on", ("peer", Bare(peer_id)), ("id", self.snapshot.id),
                  ("size", self.snapshot.size))
        pr.become_snapshot(self.snapshot.index, self.now)
        pr.last_send = self.now
        self._send(peer_id, InstallSnapshot(self.current_term, self.id, self.address, self.snapshot))

    def _on_append_response(self, from_id: str, resp: AppendEntriesResponse) -> None:
        leader = self.leader
        if leader is None or resp.term < self.current_term:
            return
        pr = leader.progress.get(from_id)
        if pr is None:
            return
        pr.last_contact = self.now
        if not self._note_volume(leader, from_id, pr, resp.volume, resp.last_log_index):
            return
        if resp.heartbeat:
            if resp.read_seq > pr.acked_read_seq:
                pr.acked_read_seq = resp.read_seq
                self._confirm_reads()
            if resp.last_log_index >= pr.match_index:
                pr.behind_since = -1
            elif pr.behind_since < 0:
                pr.behind_since = self.now
            elif self.now - pr.behind_since >= 2 * self.config.heartbeat_interval:
                # A quiet cluster sends nothing but heartbeats: without this a
                # follower that lost entries waits for the next write. One such
                # answer may just have been overtaken by an append's answer;
                # answers saying so for two heartbeat intervals are not.
                pr.behind_since = -1
                self._peer_lost_entries(from_id, pr, resp.last_log_index)
                return
            if pr.state is ProgressState.PROBE:
                pr.probe_sent = False
                self._replicate_to(from_id, pr, allow_empty=True)
            elif (pr.state is ProgressState.PIPELINE and pr.inflight
                  and self.now - pr.oldest_unacked >= self.config.heartbeat_interval):
                # a batch (or its answer) was lost: nothing acknowledged it for a
                # whole heartbeat interval, so probe again from the match point
                self._log("INFO", "aborting pipeline replication", ("peer", self._server(from_id)))
                pr.next_index = pr.match_index + 1
                pr.become_probe()
                self._replicate_to(from_id, pr, allow_empty=True)
            return
        if resp.success:
            decision = self.rules.follower_progress(ProgressRequest(
                True, pr.match_index, pr.next_index, resp.prev_log_index, resp.match_index, resp.last_log_index))
            moved = pr.acknowledge(decision.match_index, decision.next_index, self.now)
            if pr.state is ProgressState.PROBE:
                pr.become_pipeline()
                self._log("INFO", "pipelining replication", ("peer", self._server(from_id)))
            if moved:
                self._maybe_commit(leader)
                self._maybe_send_timeout_now(from_id, pr)
            if self.leader is not None:  # committing our own removal ends leadership
                self._replicate_to(from_id, pr)
            return
        if not pr.answers_current_request(resp.prev_log_index):
            return
        if resp.last_log_index < pr.match_index:
            self._peer_lost_entries(from_id, pr, resp.last_log_index)
            return
        if pr.state is ProgressState.PIPELINE:
            self._log("INFO", "aborting pipeline replication", ("peer", self._server(from_id)))
        decision = self.rules.follower_progress(ProgressRequest(
            False, pr.match_index, pr.next_index, resp.prev_log_index, 0, resp.last_log_index))
        pr.match_index = decision.match_index
        pr.back_off(decision.next_index)
        self._log("WARN", "appendEntries rejected, sending older logs", ("peer", self._server(from_id)),
                  ("next", pr.next_index))
        self._replicate_to(from_id, pr, allow_empty=True)

    def _peer_lost_entries(self, peer_id: str, pr: Progress, last_index: int) -> None:
        """The peer no longer has entries it acknowledged (a heartbeat answer
        or a rejection says its log ends below its match index): believe it
        and probe from its end, or next_index stays pinned above its log and
        the two sides trade rejections forever (etcd's heartbeat-response
        handling does the same)."""
        self._log("WARN", "peer lost acknowledged log entries, replicating again",
                  ("peer", self._server(peer_id)), ("match-index", pr.match_index), ("last-index", last_index))
        if pr.state is ProgressState.PIPELINE:
            self._log("INFO", "aborting pipeline replication", ("peer", self._server(peer_id)))
        pr.match_index = last_index
        pr.next_index = last_index + 1
        pr.become_probe()
        self._replicate_to(peer_id, pr, allow_empty=True)

    def _note_volume(self, leader: LeaderState, peer_id: str, pr: Progress, volume: str, last_index: int) -> bool:
        """Rule 7, the leader's side: track the volume each peer answers
        from. A peer whose volume changed under this leader starts over
        (nothing it acknowledged is there); a voter answering from a volume
        other than the one it was admitted with is demoted, and counts for
        nothing until autopilot has promoted it again. False when the answer
        was consumed by starting over."""
        if not volume or volume == pr.volume:
            if peer_id in self._uncounted_voters(leader):
                self._demote_stale_voter(leader, peer_id)
            return True
        if volume in pr.retired_volumes:
            return False  # late news from a volume that is gone
        previous, pr.volume = pr.volume, volume
        leader.volumes_seen += 1
        if previous:
            pr.retired_volumes.add(previous)
        server = self.configuration.get(peer_id)
        admitted = server.volume if server is not None and server.is_voter else ""
        if previous or (admitted and admitted != volume):
            self._log("WARN", "peer's storage was lost: not counting it for commit, reads or the lease "
                              "until it is caught up and re-admitted", ("peer", self._server(peer_id)),
                      ("volume", volume), ("admitted-volume", admitted or previous))
        if previous:
            # probe from where its new log ends: answers to what was sent to
            # the old volume then no longer match the probe and are ignored
            pr.match_index = 0
            pr.acked_read_seq = 0
            pr.next_index = min(last_index, self.log.last_index) + 1
            pr.become_probe()
            self._replicate_to(peer_id, pr, allow_empty=True)
        if self._stale_voter(peer_id, pr):
            self._demote_stale_voter(leader, peer_id)
        return not previous

    def _stale_voter(self, peer_id: str, pr: Progress) -> bool:
        server = self.configuration.get(peer_id)
        return (server is not None and server.is_voter and bool(server.volume) and bool(pr.volume)
                and server.volume != pr.volume)

    def _uncounted_voters(self, leader: LeaderState) -> frozenset[str]:
        """Voters whose answers count for nothing (rule 7). Asked on every
        answer, it changes only with the configuration or a peer's volume."""
        conf, seen, voters = leader.uncounted
        if conf is self.configuration and seen == leader.volumes_seen:
            return voters
        voters = frozenset(peer_id for peer_id, pr in leader.progress.items()
                           if pr.volume and self._stale_voter(peer_id, pr))
        leader.uncounted = (self.configuration, leader.volumes_seen, voters)
        return voters

    def _demote_stale_voter(self, leader: LeaderState, peer_id: str) -> None:
        if not self._configuration_stable() or leader.transfer is not None:
            return  # tried again at its next answer
        self._change_membership(leader, ev.ChangeMembership(0, ConfigCommand.DEMOTE_VOTER, peer_id))

    def _on_install_snapshot_response(self, from_id: str, resp: InstallSnapshotResponse) -> None:
        leader = self.leader
        if leader is None or resp.term < self.current_term:
            return
        pr = leader.progress.get(from_id)
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        pr.last_contact = self.now
        if not self._note_volume(leader, from_id, pr, resp.volume, resp.last_index):
            return
        if resp.success:
            pr.acknowledge(max(pr.match_index, resp.last_index), max(pr.next_index, resp.last_index + 1), self.now)
            self._maybe_commit(leader)
        else:
            self._log("WARN", "installSnapshot rejected to", ("peer", Bare(from_id)), ("id", self.snapshot.id))
        pr.become_probe()
        self._replicate_to(from_id, pr, allow_empty=True)

    def _on_snapshot_send_failed(self, event: ev.SnapshotSendFailed) -> None:
        pr = self.progress.get(event.peer_id)
        if pr is not None and pr.state is ProgressState.SNAPSHOT:
            self._log("ERROR", "failed to send snapshot to", ("peer", self._server(event.peer_id)),
                      ("error", "transfer failed"))
            pr.become_probe()
            pr.probe_sent = True  # retry on the next heartbeat answer, not in a tight loop

    def _maybe_commit(self, leader: LeaderState) -> None:
        """Rule 3: advance commit to what a quorum of voters matched, but only
        by counting replicas of an entry from the current term."""
        if leader.lease.wait_until and self.now < leader.lease.wait_until:
            return  # deferred commit (lease.py): the previous leader may still serve reads
        matches = leader.match_indexes(self.configuration.voters, self.id, self.log.last_index,
                                       self._uncounted_voters(leader))
        index = self.rules.leader_commit_index(CommitRequest(self.current_term, self.commit_index, matches,
                                                             LogView(self.log)))
        if index > self.commit_index:
            self._advance_commit(leader, index)

    def _can_commit_by_counting(self, index: int) -> bool:
        """Figure 8 as the core's own rule states it (rules.leader_commit_index);
        the learning view asks it why a majority's entry waits."""
        return self.log.term_at(index) == self.current_term

    def _advance_commit(self, leader: LeaderState, index: int) -> None:
        had_committed_in_term = self.committed_in_term()
        had_lease = leader.lease.valid(self.now)
        self._commit_to(index)
        leader.lease.committed(index, self.lease_rules)
        if not had_lease and leader.lease.valid(self.now):
            self._log("DEBUG", "read lease acquired", ("index", index),
                      ("expires", timedelta(milliseconds=leader.lease.until - self.now)))
        if not had_committed_in_term and self.committed_in_term():
            self._confirm_reads()
        if (self.committed_configuration_index == self.configuration_index
                and not self.configuration.is_voter(self.id)):
            self._log("INFO", "removed ourself, transitioning to follower")
            self._become_follower(self.current_term, None, None)
            return
        if leader.pending_config_changes and self._configuration_stable():
            self._change_membership(leader, leader.pending_config_changes.pop(0))

    def _maybe_send_timeout_now(self, peer_id: str, pr: Progress) -> None:
        transfer = self.leader.transfer if self.leader is not None else None
        if transfer is not None and transfer.target == peer_id and pr.match_index >= self.log.last_index:
            lease = self.leader.lease if self.leader is not None else None
            if lease is not None and lease.wait_until:
                return  # its successor would skip the wait for our predecessor's lease (lease.py)
            if lease is not None and not lease.ended:
                lease.end()
                self._log("DEBUG", "read lease ended for the leadership transfer", ("to", Bare(peer_id)))
            self._send(peer_id, TimeoutNow(self.current_term, self.id))


def _within_bytes(entries: list[Entry], limit: int) -> list[Entry]:
    """The leading entries whose data fits ``limit`` bytes; at least one."""
    total = 0
    for i, entry in enumerate(entries):
        total += len(entry.data)
        if total > limit and i > 0:
            return entries[:i]
    return entries
