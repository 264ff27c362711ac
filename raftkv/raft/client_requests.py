"""Requests from clients and operators: a part of :class:`~raftkv.raft.node.RaftNode`.

Theory of operation: only a leader that is not handing leadership over takes
a request that changes state; anyone else answers ``Rejected`` with a
:class:`~raftkv.raft.errors.RejectReason` (and the known leader, to forward
to). Proposals are appended and answered ``Proposed`` at their index.
Linearizable reads wait for a heartbeat round a quorum echoed (ReadIndex,
thesis §6.4). Membership changes go one at a time (rule 4): one that arrives
while the previous is uncommitted waits in the leader's queue. A leadership
transfer brings the target up to date, sends it TimeoutNow, and refuses new
requests until it took over or an election timeout passed.
"""

from __future__ import annotations

from datetime import timedelta

from . import effects as fx
from . import events as ev
from .configuration import ConfigCommand, Configuration, Server
from .effects import Bare
from .errors import RejectReason
from .fields import NodeFields
from .membership import RefusedChange, ServerList, logged_address, next_configuration
from .messages import Entry, EntryType, ReadIndexRequest, ReadIndexResponse
from .progress import ProgressState
from .quorum import votes_needed
from .roles import LeadershipTransfer, LeaderState
from .rules import ReadDecision, ReadRequest


class ClientRequests(NodeFields):
    """Mixed into RaftNode; reads and changes its fields."""

    def _leader_for_change(self, request_id: int) -> LeaderState | None:
        """The leader state, if this node leads and is not handing leadership
        over; otherwise refuses the request, saying why."""
        leader = self.leader
        if leader is None:
            self._not_leader(request_id)
            return None
        if leader.transfer is not None:
            self._reject(request_id, RejectReason.TRANSFER_IN_PROGRESS, "leadership transfer in progress")
            return None
        return leader

    def _not_leader(self, request_id: int) -> None:
        self._emit(fx.Rejected(request_id, RejectReason.NOT_LEADER, "node is not the leader",
                               self.leader_id, self.leader_address))

    def _on_propose(self, event: ev.Propose) -> None:
        self._propose((event,))

    def _on_propose_batch(self, event: ev.ProposeBatch) -> None:
        self._propose(event.proposals)

    def _propose(self, proposals) -> None:
        leader = self.leader
        if leader is None:
            for p in proposals:
                self._not_leader(p.request_id)
            return
        if leader.transfer is not None:
            for p in proposals:
                self._reject(p.request_id, RejectReason.TRANSFER_IN_PROGRESS, "leadership transfer in progress")
            return
        index = self.log.last_index
        entries = []
        for p in proposals:
            index += 1
            entries.append(Entry(index, self.current_term, EntryType.COMMAND, p.data))
            self._emit(fx.Proposed(p.request_id, index, self.current_term))
        self._append_as_leader(entries)

    def _on_read_index(self, event: ev.ReadIndex) -> None:
        leader = self.leader
        if leader is None:
            if not self._ask_leader_for_read_index(event):
                self._not_leader(event.request_id)
            return
        if event.lease and self.lease_rules.enabled and self._lease_holds(leader):
            self._emit(fx.ReadReady(event.request_id, self.commit_index))
            return
        self._confirm_read(leader, event.request_id)

    def _confirm_read(self, leader: LeaderState, request_id: int) -> None:
        """Queue a read (a client's, or a follower's under a negative id) for
        the next heartbeat round; a lone voter needs none, only its first commit."""
        lone = self._is_lone_voter()
        decision = self._read_rule(leader, self.commit_index, confirmed=lone)
        if decision.ready:
            self._answer_read(request_id, decision.index)
        elif lone:
            leader.read_only.add_unconfirmed(request_id)
        elif leader.read_only.add(request_id, self.commit_index):
            self._heartbeat(leader)

    def _read_rule(self, leader: LeaderState, arrival_index: int, confirmed: bool) -> ReadDecision:
        return self.rules.read_index(ReadRequest(self.current_term, self.commit_index, leader.first_index_of_term,
                                                 arrival_index, confirmed))

    # -- reads on followers: the leader confirms, the follower serves

    def _ask_leader_for_read_index(self, event: ev.ReadIndex) -> bool:
        """A follower's reads: ask the leader for their read index (one
        message for the batch); False if there is no leader to ask."""
        leader_id = self.leader_id
        if (not self.config.follower_reads or leader_id is None or leader_id == self.id
                or not self.configuration.has(leader_id) or self.candidate is not None):
            return False
        self._follower_read_seq += 1
        seq = self._follower_read_seq
        self._follower_reads[seq] = event.request_id
        self._send(leader_id, ReadIndexRequest(self.current_term, seq, event.lease))
        return True

    def _on_read_index_request(self, from_id: str, msg: ReadIndexRequest) -> None:
        leader = self.leader
        if leader is None or msg.term != self.current_term:
            self._send(from_id, ReadIndexResponse(self.current_term, msg.seq, 0, False))
            return
        if msg.lease and self.lease_rules.enabled and self._lease_holds(leader):
            self._send(from_id, self._read_index_answer(msg.seq, self.commit_index))
            return
        # a read of the follower's, queued with the leader's own under an id
        # no client request has (they count up from 1)
        leader.remote_read_ids -= 1
        request_id = leader.remote_read_ids
        leader.remote_reads[request_id] = (from_id, msg.seq)
        self._confirm_read(leader, request_id)

    def _answer_read(self, request_id: int, index: int) -> None:
        """A confirmed read: the client's (ReadReady) or a follower's (its answer)."""
        leader = self.leader
        remote = leader.remote_reads.pop(request_id, None) if leader is not None and request_id < 0 else None
        if remote is not None:
            self._send(remote[0], self._read_index_answer(remote[1], index))
        elif request_id > 0:
            self._emit(fx.ReadReady(request_id, index))

    def _read_index_answer(self, seq: int, index: int) -> ReadIndexResponse:
        return ReadIndexResponse(self.current_term, seq, index, True, self.log.term_at(index) or 0)

    def _on_read_index_response(self, from_id: str, msg: ReadIndexResponse) -> None:
        request_id = self._follower_reads.pop(msg.seq, None)
        if request_id is None:
            return
        if not msg.success or msg.term != self.current_term or from_id != self.leader_id:
            self._not_leader(request_id)
            return
        if (msg.index > self.commit_index and msg.index_term and msg.index <= self.log.last_index
                and msg.index > self.log.base_index and self.log.term_at(msg.index) == msg.index_term):
            # our entry at the read index is the leader's, so is all before it
            # (Log Matching): it is committed here too, as an AppendEntries
            # would have told us a heartbeat later
            self._commit_to(msg.index)
        if self.commit_index >= msg.index:
            self._emit(fx.ReadReady(request_id, self.commit_index))
        else:
            # served once this follower has committed (so applied) that far
            self._reads_awaiting_commit.append((msg.index, request_id))

    def _release_follower_reads(self) -> None:
        waiting = self._reads_awaiting_commit
        while waiting and waiting[0][0] <= self.commit_index:
            self._emit(fx.ReadReady(waiting.popleft()[1], self.commit_index))

    def _fail_follower_reads(self) -> None:
        """The leader or term changed: reads asked of the old one are refused
        (the client may ask again, of the new one)."""
        for request_id in [*self._follower_reads.values(), *(rid for _, rid in self._reads_awaiting_commit)]:
            self._not_leader(request_id)
        self._follower_reads.clear()
        self._reads_awaiting_commit.clear()

    def _lease_holds(self, leader: LeaderState) -> bool:
        """Whether the lease lets a read be served now; renews it on the way (lease.py)."""
        lease = leader.lease
        valid = lease.valid(self.now)
        if (not lease.ended and not lease.renewal and self.committed_in_term() and leader.transfer is None
                and lease.until - self.now < self.lease_rules.duration // 2):
            lease.renewal = self.log.last_index + 1
            self._log("DEBUG", "renewing the read lease with a no-op entry" if valid else
                      "no read lease, confirming reads by heartbeat and renewing it with a no-op entry",
                      ("index", lease.renewal))
            self._append_as_leader([Entry(lease.renewal, self.current_term, EntryType.NOOP)])
        return valid

    def read_lease(self) -> tuple[int, int]:
        """``(until, floor)``: a read arriving before ``until`` (ms, this
        node's clock) may be served without a heartbeat round from an applied
        state at or past index ``floor``, which covers every entry of earlier
        terms (the writes a predecessor acknowledged); this leader's own
        writes are acknowledged only once applied. ``(0, 0)`` while no lease
        holds. For readers beside the core that serve lease reads themselves
        (the HTTP workers): they must stop the moment the lease ends, which a
        handover does before its TimeoutNow leaves."""
        leader = self.leader
        if (leader is None or not self.lease_rules.enabled or leader.lease.ended or leader.transfer is not None
                or not self.committed_in_term()):
            return 0, 0
        return leader.lease.until, leader.first_index_of_term

    def _confirm_reads(self) -> None:
        """Release reads whose heartbeat round a quorum echoed. A read that came
        in before this leader committed its no-op gets the commit index at
        release time, which covers every write acknowledged before it."""
        leader = self.leader
        if leader is None or not self.committed_in_term():
            return
        ready, start_next = leader.read_only.confirm(
            leader.quorum_read_seq(self.configuration.voters, self.id, self._uncounted_voters(leader)))
        if self._is_lone_voter():
            ready = leader.read_only.take_all()
        for request_id, index in ready:
            decision = self._read_rule(leader, index, confirmed=True)
            if decision.ready:
                self._answer_read(request_id, decision.index)
            elif leader.read_only.add(request_id, index):
                start_next = True
        if start_next:
            self._heartbeat(leader)

    def _on_change_membership(self, event: ev.ChangeMembership) -> None:
        leader = self._leader_for_change(event.request_id)
        if leader is None:
            return
        if not self._configuration_stable():
            leader.pending_config_changes.append(event)
            return
        self._change_membership(leader, event)

    def _configuration_stable(self) -> bool:
        """Rule 4: previous change committed, and an entry of this term too."""
        return self.membership.latest_committed(self.commit_index) and self.committed_in_term()

    def _change_membership(self, leader: LeaderState, event: ev.ChangeMembership) -> None:
        # a server becoming a voter is recorded with the volume it answers
        # from (rule 7); the leader knows it once the server has answered
        volume = ""
        moved = self.configuration.get(event.server_id)
        if (event.command is ConfigCommand.ADD_VOTER and moved is not None and moved.is_voter and moved.volume
                and event.address not in ("", moved.address)):
            # a voter given a new address is the same server on the same volume,
            # not one re-admitted with whatever the leader last heard from it
            volume = moved.volume
        elif event.command is ConfigCommand.ADD_VOTER:
            pr = leader.progress.get(event.server_id)
            volume = pr.volume if pr is not None else (self.volume_id if event.server_id == self.id else "")
        new = next_configuration(self.configuration, event.command, event.server_id, event.address, volume)
        if isinstance(new, RefusedChange):
            self._reject(event.request_id, new.reason, new.error)
            return
        if event.command in (ConfigCommand.DEMOTE_VOTER, ConfigCommand.REMOVE_SERVER):
            stale = self._uncounted_voters(leader)
            intact = [v for v in new.voters if v not in stale]
            if stale and len(intact) < votes_needed(len(new.voters)):
                # as etcd's strict reconfiguration check: a voter that lost its
                # storage counts for nothing, so this would leave no quorum
                self._reject(event.request_id, RejectReason.QUORUM_AT_RISK,
                             f"removing {event.server_id!r} would leave {len(intact)} of {len(new.voters)} voters "
                             f"with their storage, fewer than a quorum; {', '.join(sorted(stale))} lost theirs")
                return
        before = self.configuration.get(event.server_id)
        after = new.get(event.server_id)
        if (after is not None and after.is_voter and before is not None and before.volume
                and after.volume != before.volume):
            self._log("WARN", "re-admitting a voter whose storage was lost: it has caught up on a new volume",
                      ("server-id", Bare(event.server_id)), ("volume", after.volume),
                      ("previous-volume", before.volume))
        entry = Entry(self.log.last_index + 1, self.current_term, EntryType.CONFIGURATION, new.encode())
        self._log("INFO", "updating configuration", ("command", Bare(str(event.command))),
                  ("server-id", Bare(event.server_id)),
                  ("server-addr", Bare(logged_address(event.command, event.address))),
                  ("servers", ServerList(new)))
        self.membership.appended(new, entry.index)
        self._configuration_changed()
        self._emit(fx.Proposed(event.request_id, entry.index, self.current_term))
        for server in new.servers:
            if server.id != self.id and server.id not in leader.progress:
                self._add_progress(leader, server.id)
        for peer_id in list(leader.progress):
            if not new.has(peer_id):
                self._log("INFO", "removed peer, stopping replication", ("peer", Bare(peer_id)),
                          ("last-index", self.log.last_index))
                del leader.progress[peer_id]
        self._append_as_leader([entry])

    def _on_transfer_leadership(self, event: ev.TransferLeadership) -> None:
        leader = self._leader_for_change(event.request_id)
        if leader is None:
            return
        target = event.target_id
        self._log("DEBUG", "starting leadership transfer", ("id", target if target else None),
                  ("address", self._server(target).address if target else None))
        if target == self.id:
            self._log("INFO", "cannot transfer leadership to itself")
            self._reject(event.request_id, RejectReason.TRANSFER_TO_SELF, "cannot transfer leadership to itself")
            return
        if target is None:
            candidates = [(leader.progress[v].match_index, v) for v in self.configuration.voters
                          if v != self.id and v in leader.progress]
            if not candidates:
                self._log("DEBUG", "cannot find peer")
                self._reject(event.request_id, RejectReason.PEER_NOT_FOUND, "cannot find peer")
                return
            target = max(candidates)[1]
        if not self.configuration.is_voter(target) or target not in leader.progress:
            self._log("DEBUG", "cannot find peer")
            self._reject(event.request_id, RejectReason.PEER_NOT_FOUND, f"cannot find peer {target!r}")
            return
        leader.transfer = LeadershipTransfer(target, self.now + self.config.election_timeout, event.request_id)
        pr = leader.progress[target]
        self._maybe_send_timeout_now(target, pr)
        self._replicate_to(target, pr, allow_empty=pr.state is ProgressState.PROBE)

    def _on_bootstrap(self, event: ev.Bootstrap) -> None:
        if self.current_term != 0 or self.log.last_index != 0 or self.snapshot.index != 0:
            self._log("INFO", "bootstrap skipped: node already has state")
            return
        if event.wait_for_cluster:
            self._pending_bootstrap = event.configuration
            self._reset_election_timer()
            self.election_deadline = max(self.election_deadline, self.now + event.wait_at_least)
            self._log("INFO", "waiting before bootstrapping, in case a cluster already has this node as a member",
                      ("wait", timedelta(milliseconds=self.election_deadline - self.now)))
            return
        self._bootstrap(event.configuration)

    def _give_up_bootstrap(self, from_id: str, term: int) -> None:
        """An existing cluster spoke to us: this node is one of its members
        whose volume was lost. Bootstrapping a cluster of its own would put
        a second history under the same name (rule 7)."""
        self._pending_bootstrap = None
        self._log("WARN", "not bootstrapping: an existing cluster has this node as a member; it will be "
                          "caught up and re-admitted", ("from", Bare(from_id)), ("term", term))

    def _bootstrap(self, configuration: Configuration) -> None:
        self._pending_bootstrap = None
        self._set_hard_state(1, None)
        me = configuration.get(self.id)
        if configuration.ids == (self.id,) and me is not None and not me.volume and self.volume_id:
            # a lone node forming a cluster records its own volume (rule 7)
            configuration = Configuration(tuple(
                Server(s.id, s.address, s.suffrage, self.volume_id) if s.id == self.id else s
                for s in configuration.servers))
        entry = Entry(1, 1, EntryType.CONFIGURATION, configuration.encode())
        self.log.append([entry])
        self._emit(fx.AppendToLog((entry,)))
        self._recompute_configuration()
        self._configuration_changed()
