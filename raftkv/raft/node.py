"""RaftNode: the whole Raft protocol as ``step(event) -> list[Effect]``.

Theory of operation
-------------------
A node is a follower, a candidate or a leader (Raft §5.1). The caller feeds it
events (:mod:`.events`) and carries out the returned effects (:mod:`.effects`)
in order, honouring the durability rule of the package docstring. The node
keeps an in-memory mirror of its durable log (:class:`.log.RaftLog`); every
change to it is also emitted as an effect so the runtime's store follows.

The role is read off the role state the node holds (:mod:`.roles`): a
``LeaderState`` while it leads, a ``CandidateState`` while it campaigns,
neither while it follows. Membership bookkeeping lives in :mod:`.membership`,
the decision when to snapshot and how far to compact in
:mod:`.snapshot_policy`; this module is the protocol that uses them.

House rules, numbered so tests and comments can point at them:

1. ``current_term`` and ``voted_for`` change only through ``_set_hard_state``,
   which emits ``PersistHardState`` before any message that depends on it.
2. A node never truncates an entry at or below ``commit_index``.
3. The leader counts replicas only for entries of its own term (§5.4.2);
   earlier entries commit indirectly.
4. The configuration in force is the newest one in the log, committed or
   not (single-server changes, thesis §4.1); a leader appends a new one only
   when the previous one is committed and it has committed an entry of its
   own term.
5. Everything committed is applied at once: after each step
   ``last_applied == commit_index``, so ``TakeSnapshot`` and ``ReadReady``
   can rely on the state machine being exactly there.
6. Pre-vote (thesis §9.6), check-quorum and leader stickiness keep a
   partitioned or removed node from disrupting a healthy leader.

Log records are effects carrying hashicorp/raft's message text and keys, so a
simulated node prints what a live node prints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from . import effects as fx
from . import events as ev
from .config import RaftConfig
from .configuration import Configuration, Server, Suffrage
from .effects import Bare
from .errors import RejectReason
from .log import RaftLog
from .membership import Membership, RefusedChange, ServerList, logged_address, next_configuration
from .messages import (AppendEntries, AppendEntriesResponse, Entry, EntryType, InstallSnapshot,
                       InstallSnapshotResponse, RequestVote, RequestVoteResponse, SnapshotMeta,
                       TimeoutNow)
from .progress import Progress, ProgressState
from .quorum import votes_needed
from .roles import (CANDIDATE, FOLLOWER, LEADER, SHUTDOWN, CandidateState, LeaderState,
                    LeadershipTransfer)
from .snapshot_policy import SnapshotDue, SnapshotPolicy
from .status import NodeStatus, PeerStatus

__all__ = ["RaftNode", "RaftConfig", "PersistentState", "FOLLOWER", "CANDIDATE", "LEADER", "SHUTDOWN"]


@dataclass(frozen=True)
class PersistentState:
    """What a node recovers from disk on restart."""
    current_term: int = 0
    voted_for: str | None = None
    commit_index: int = 0               # a hint: the last index known applied
    snapshot: SnapshotMeta | None = None
    entries: tuple[Entry, ...] = ()


class RaftNode:
    def __init__(self, node_id: str, address: str, config: RaftConfig | None = None,
                 state: PersistentState | None = None, rng: random.Random | None = None,
                 now: int = 0) -> None:
        self.id = node_id
        self.address = address
        self.config = config or RaftConfig()
        self.rng = rng or random.Random()
        self.now = now
        state = state or PersistentState()

        self.current_term = state.current_term
        self.voted_for = state.voted_for
        self.snapshot: SnapshotMeta = state.snapshot or SnapshotMeta(0, 0)
        self.log, self._stale_store_from = _restore_log(self.snapshot, state.entries)

        self.commit_index = max(self.snapshot.index, min(state.commit_index, self.log.last_index))
        self.last_applied = self.snapshot.index
        self.membership = Membership(self.snapshot)
        self._recompute_configuration()

        # at most one of these is set: the role is read off them
        self.leader: LeaderState | None = None
        self.candidate: CandidateState | None = None

        self.leader_id: str | None = None
        self.leader_address: str | None = None
        self.last_leader_contact = -(10 ** 12)
        self.election_deadline = 0
        self._warned_no_election = False
        self.snapshots = SnapshotPolicy(self.config, self._randomized, now)

        self._out: list = []
        self._announced: tuple | None = None

    # ------------------------------------------------------------------ driving

    def start(self) -> list:
        """Effects of coming up: logs, and applying what is known committed."""
        self._log("INFO", "initial configuration", ("index", self.configuration_index),
                  ("servers", ServerList(self.configuration)))
        if self._stale_store_from is not None:
            # the store kept entries that contradict the snapshot or end before
            # it (a crash in the middle of installing one): drop them as the
            # install would have
            self._log("WARN", "discarding log entries that conflict with the snapshot",
                      ("from", self._stale_store_from), ("snapshot-index", self.snapshot.index))
            self._emit(fx.TruncateLog(self._stale_store_from))
        self._become_follower(self.current_term, None, None, announce=True)
        self._apply_committed()
        return self._flush()

    def step(self, event, now: int | None = None) -> list:
        """Handle one event. ``now`` (ms) moves the node's clock first; timers
        reset by a message must count from the moment it arrived."""
        if now is not None and now > self.now:
            self.now = now
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"unknown event {event!r}")
        handler(self, event)
        return self._flush()

    def next_deadline(self) -> int:
        """The earliest time at which a Tick can change anything."""
        leader = self.leader
        if leader is None:
            return min(self.election_deadline, self.snapshots.next_check)
        deadline = min(leader.next_heartbeat, leader.next_lease_check, self.snapshots.next_check)
        if leader.transfer is not None:
            deadline = min(deadline, leader.transfer.deadline)
        for pr in leader.progress.values():
            if self._has_commit_news(pr):
                deadline = min(deadline, pr.last_send + self.config.commit_timeout)
        return deadline

    def _flush(self) -> list:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ views

    def status(self) -> NodeStatus:
        """A frozen picture of this node, for everything outside the core."""
        leader = self.leader
        peers = ()
        if leader is not None:
            peers = tuple(_peer_status(server, leader.progress[server.id], self.now)
                          for server in self.configuration.servers if server.id in leader.progress)
        return NodeStatus(
            id=self.id, address=self.address, role=self.role, term=self.current_term,
            leader_id=self.leader_id, leader_address=self.leader_address,
            first_index=self.log.first_index, last_log_index=self.log.last_index,
            last_log_term=self.log.last_term, base_term=self.log.base_term,
            commit_index=self.commit_index, last_applied=self.last_applied,
            last_snapshot_index=self.snapshot.index, last_snapshot_term=self.snapshot.term,
            configuration=self.configuration, configuration_index=self.configuration_index,
            committed_configuration=self.committed_configuration,
            committed_configuration_index=self.committed_configuration_index,
            last_contact=self.last_contact(), committed_in_term=self.committed_in_term(),
            transfer_target=leader.transfer.target if leader and leader.transfer else None,
            now=self.now, peers=peers)

    def entries(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Log entries lo..hi inclusive, clamped to what the in-memory log holds."""
        return tuple(self.log.slice(lo, hi))

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index`` (also at first_index - 1); None if
        compacted away or beyond the log."""
        return self.log.term_at(index)

    # Read-only names the simulator, the tests and (until they read status())
    # the runtime's views use.

    @property
    def role(self) -> str:
        if self.leader is not None:
            return LEADER
        return CANDIDATE if self.candidate is not None else FOLLOWER

    @property
    def is_leader(self) -> bool:
        return self.leader is not None

    @property
    def progress(self) -> dict[str, Progress]:
        return self.leader.progress if self.leader is not None else {}

    @property
    def configuration(self) -> Configuration:
        return self.membership.latest

    @property
    def configuration_index(self) -> int:
        return self.membership.latest_index

    @property
    def committed_configuration(self) -> Configuration:
        return self.membership.committed

    @property
    def committed_configuration_index(self) -> int:
        return self.membership.committed_index

    def last_contact(self) -> int:
        if self.leader is not None:
            return 0
        return max(0, self.now - self.last_leader_contact) if self.leader_id else -1

    def committed_in_term(self) -> bool:
        return self.leader is not None and self.commit_index >= self.leader.first_index_of_term

    # ------------------------------------------------------------------ helpers

    def _emit(self, effect) -> None:
        self._out.append(effect)

    def _log(self, level: str, message: str, *fields: tuple[str, object], logger: str = "raft") -> None:
        self._out.append(fx.Log(level, logger, message, fields))

    def _reject(self, request_id: int, reason: RejectReason, error: str) -> None:
        self._emit(fx.Rejected(request_id, reason, error))

    def _node_desc(self, role: str | None = None) -> str:
        return f"Node at {self.address} [{role or self.role}]"

    def _server(self, server_id: str) -> Server:
        return self.configuration.get(server_id) or Server(server_id, "", Suffrage.VOTER)

    def _send(self, peer_id: str, message) -> None:
        self._emit(fx.Send(peer_id, self._server(peer_id).address, message))

    def _randomized(self, timeout: int) -> int:
        return timeout + self.rng.randrange(timeout + 1)

    def _reset_election_timer(self, timeout: int | None = None) -> None:
        self.election_deadline = self.now + self._randomized(timeout or self.config.heartbeat_timeout)

    def _set_hard_state(self, term: int, voted_for: str | None) -> None:
        if term != self.current_term or voted_for != self.voted_for:
            self.current_term = term
            self.voted_for = voted_for
            self._emit(fx.PersistHardState(term, voted_for))

    def _recompute_configuration(self) -> None:
        self.membership.recompute(self.log, self.snapshot, self.commit_index)

    def _configuration_changed(self) -> None:
        self._emit(fx.ConfigurationChanged(self.configuration, self.configuration_index))

    def _votes_needed(self) -> int:
        return votes_needed(len(self.configuration.voters))

    def _has_live_leader(self) -> bool:
        if self.leader is not None:
            return True
        return (self.leader_id is not None
                and self.now - self.last_leader_contact < self.config.heartbeat_timeout)

    def _is_lone_voter(self) -> bool:
        return len(self.configuration.voters) == 1 and self.configuration.is_voter(self.id)

    # ------------------------------------------------------------------ role changes

    def _become_follower(self, term: int, leader_id: str | None, leader_address: str | None,
                         announce: bool = False) -> None:
        was = self.role
        if self.leader is not None:
            self._leave_leadership(self.leader)
        self.leader = None
        self.candidate = None
        self._set_hard_state(term, self.voted_for if term == self.current_term else None)
        changed = was != FOLLOWER or announce
        if leader_id is not None or changed:
            self.leader_id = leader_id
            self.leader_address = leader_address
        if leader_id is not None:
            self.last_leader_contact = self.now
        self._reset_election_timer()
        self._warned_no_election = False
        if changed:
            self._log("INFO", "entering follower state", ("follower", self._node_desc(FOLLOWER)),
                      ("leader-address", Bare(leader_address or "")), ("leader-id", Bare(leader_id or "")))
        self._state_changed()

    def _state_changed(self) -> None:
        now = (self.role, self.current_term, self.leader_id, self.leader_address)
        if now != self._announced:
            self._announced = now
            self._emit(fx.StateChanged(*now))

    def _leave_leadership(self, leader: LeaderState) -> None:
        """Answer everything only a leader could finish (hashicorp's stepDown)."""
        for request_id in leader.read_only.drain():
            self._reject(request_id, RejectReason.LEADERSHIP_LOST, "leadership lost while confirming the read")
        for change in leader.pending_config_changes:
            self._reject(change.request_id, RejectReason.LEADERSHIP_LOST, "leadership lost")
        if leader.transfer is not None:
            self._log("DEBUG", "lost leadership during transfer (expected)")
            self._emit(fx.Completed(leader.transfer.request_id))
        for peer_id, progress in leader.progress.items():
            if progress.state is ProgressState.PIPELINE:
                self._log("INFO", "aborting pipeline replication", ("peer", self._server(peer_id)))

    def _start_campaign(self, transfer: bool = False) -> None:
        """Become a candidate: pre-vote first unless disabled or a transfer."""
        if self.candidate is None:
            # A leader only gets here by a TimeoutNow of its own term, which
            # no peer sends; its leadership ends without answering anything.
            self.leader = None
            self.candidate = CandidateState(transfer)
            self._state_changed()
        else:
            self.candidate = CandidateState(transfer)
        self.leader_id = None
        self.leader_address = None
        term = self.current_term + 1
        self._log("INFO", "entering candidate state", ("node", self._node_desc(CANDIDATE)), ("term", term))
        self._reset_election_timer(self.config.election_timeout)
        if self.config.pre_vote and not transfer:
            self._request_votes(term, pre_vote=True)
        else:
            self._start_election()

    def _start_election(self) -> None:
        self._set_hard_state(self.current_term + 1, self.id)
        self._request_votes(self.current_term, pre_vote=False)

    def _become_leader(self) -> None:
        self.candidate = None
        self.leader = leader = LeaderState(first_index_of_term=self.log.last_index + 1, next_heartbeat=self.now,
                                           next_lease_check=self.now + self.config.leader_lease_timeout)
        self.leader_id = self.id
        self.leader_address = self.address
        self._log("INFO", "entering leader state", ("leader", self._node_desc(LEADER)))
        self._state_changed()
        for server in self.configuration.servers:
            if server.id != self.id:
                self._add_progress(leader, server.id)
        self._append_as_leader([Entry(leader.first_index_of_term, self.current_term, EntryType.NOOP)])
        self._heartbeat(leader)

    def _add_progress(self, leader: LeaderState, peer_id: str) -> None:
        self._log("INFO", "added peer, starting replication", ("peer", Bare(peer_id)))
        leader.progress[peer_id] = Progress(next_index=self.log.last_index + 1, last_contact=self.now)

    # ------------------------------------------------------------------ time

    def _on_tick(self, event: ev.Tick) -> None:
        self.now = max(self.now, event.now)
        due = self.snapshots.check(self.now, self.last_applied, self.snapshot.index)
        if due is SnapshotDue.MEMORY_LIMIT:
            self._log("INFO", "log is at its in-memory limit, not waiting for the snapshot interval",
                      ("entries", self.last_applied - self.snapshot.index),
                      ("bytes", self.snapshots.applied_bytes), ("limit", self.config.snapshot_log_limit),
                      ("limit-bytes", self.config.snapshot_log_bytes))
        if due is not None:
            self._take_snapshot()
        if self.leader is not None:
            self._leader_tick(self.leader)
        elif self.now >= self.election_deadline:
            self._election_timeout()

    def _election_timeout(self) -> None:
        if self.candidate is not None:
            self._log("WARN", "Election timeout reached, restarting election")
            self._start_campaign()
            return
        if self._has_live_leader():
            self._reset_election_timer()
            return
        if not self._eligible_for_election():
            self._warned_no_election = True
            self._reset_election_timer()
            return
        self._log("WARN", "heartbeat timeout reached, starting election",
                  ("last-leader-addr", Bare(self.leader_address or "")),
                  ("last-leader-id", Bare(self.leader_id or "")))
        self._start_campaign()

    def _eligible_for_election(self) -> bool:
        if not self.configuration.servers:
            if not self._warned_no_election:
                self._log("WARN", "no known peers, aborting election")
            return False
        if not self.configuration.is_voter(self.id):
            if not self._warned_no_election:
                self._log("WARN", "heartbeat timeout reached, not part of a stable configuration "
                                  "or a non-voter, not triggering a leader election")
            return False
        return True

    def _leader_tick(self, leader: LeaderState) -> None:
        if self.now >= leader.next_lease_check:
            leader.next_lease_check = self.now + self.config.leader_lease_timeout
            if self.config.check_quorum and not self._check_lease(leader):
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
        for server in self.configuration.servers:
            if server.id == self.id or not server.is_voter:
                continue
            pr = leader.progress.get(server.id)
            silent = self.now - pr.last_contact if pr else self.config.leader_lease_timeout + 1
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

    # ------------------------------------------------------------------ messages

    def _on_receive(self, event: ev.Receive) -> None:
        msg = event.message
        if isinstance(msg, RequestVote):
            self._on_request_vote(event.from_id, msg)
            return
        if msg.term > self.current_term:
            if isinstance(msg, RequestVoteResponse):
                if msg.granted and msg.pre_vote:
                    self._on_vote_response(event.from_id, msg)  # pre-votes never move terms
                    return
                if msg.pre_vote:
                    self._log("DEBUG", "pre-vote denied: found newer term, falling back to follower",
                              ("term", msg.term))
                else:
                    self._log("DEBUG", "newer term discovered, fallback to follower", ("term", msg.term))
                self._become_follower(msg.term, None, None)
                return
            if isinstance(msg, (AppendEntriesResponse, InstallSnapshotResponse)):
                if self.leader is not None:
                    self._log("ERROR", "peer has newer term, stopping replication",
                              ("peer", self._server(event.from_id)))
                self._become_follower(msg.term, None, None)
                return
            if isinstance(msg, (AppendEntries, InstallSnapshot)):
                self._become_follower(msg.term, msg.leader_id, msg.leader_address)
            elif isinstance(msg, TimeoutNow):
                self._set_hard_state(msg.term, None)
        handler = self._message_handlers.get(type(msg))
        if handler is not None:
            handler(self, event.from_id, msg)

    # -- votes (voter side)

    def _on_request_vote(self, from_id: str, req: RequestVote) -> None:
        kind = "pre-vote" if req.pre_vote else "vote"
        grant = False
        reply_term = self.current_term
        try:
            if self.configuration.servers and not self.configuration.has(req.candidate_id):
                self._log("WARN", f"rejecting {kind} request since node is not in configuration",
                          ("from", Bare(req.candidate_address)))
                return
            if not req.leadership_transfer and self._has_live_leader() and self.leader_id != req.candidate_id:
                self._log("WARN", f"rejecting {kind} request since we have a leader",
                          ("from", Bare(req.candidate_address)), ("leader", Bare(self.leader_address or "")),
                          ("leader-id", self.leader_id or ""))
                return
            if req.term < self.current_term:
                return
            if req.pre_vote:
                if req.term > self.current_term:
                    self._log("DEBUG", "received a requestPreVote with a newer term, grant the pre-vote")
            elif req.term > self.current_term:
                self._log("DEBUG", "lost leadership because received a requestVote with a newer term")
                self._become_follower(req.term, None, None)
                reply_term = self.current_term
            if self.configuration.servers and not self.configuration.is_voter(req.candidate_id):
                self._log("WARN", f"rejecting {kind} request since node is not a voter",
                          ("from", Bare(req.candidate_address)))
                return
            if not req.pre_vote and self.voted_for is not None:
                self._log("INFO", "duplicate requestVote for same term", ("term", req.term))
                if self.voted_for == req.candidate_id:
                    self._log("WARN", "duplicate requestVote from", ("candidate", Bare(req.candidate_address)))
                    grant = True
                return
            if not self._log_is_up_to_date(req.last_log_term, req.last_log_index):
                if req.last_log_term < self.log.last_term:
                    self._log("WARN", f"rejecting {kind} request since our last term is greater",
                              ("candidate", Bare(req.candidate_address)), ("last-term", self.log.last_term),
                              ("last-candidate-term", req.last_log_term))
                else:
                    self._log("WARN", f"rejecting {kind} request since our last index is greater",
                              ("candidate", Bare(req.candidate_address)), ("last-index", self.log.last_index),
                              ("last-candidate-index", req.last_log_index))
                return
            grant = True
            if not req.pre_vote:
                self._set_hard_state(self.current_term, req.candidate_id)
                self._reset_election_timer()
        finally:
            self._emit(fx.Send(from_id, req.candidate_address,
                               RequestVoteResponse(reply_term, grant, req.pre_vote)))

    def _log_is_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        """§5.4.1: the candidate's log is at least as up to date as ours."""
        if last_log_term != self.log.last_term:
            return last_log_term > self.log.last_term
        return last_log_index >= self.log.last_index

    # -- votes (candidate side)

    def _request_votes(self, term: int, pre_vote: bool) -> None:
        candidate = self.candidate
        candidate.start_round(pre_vote)
        kind = "pre-vote" if pre_vote else "vote"
        self._log("DEBUG", "pre-voting for self" if pre_vote else "voting for self", ("term", term), ("id", self.id))
        request = RequestVote(term, self.id, self.address, self.log.last_index, self.log.last_term,
                              pre_vote=pre_vote, leadership_transfer=candidate.leadership_transfer)
        for server in self.configuration.servers:
            if server.id != self.id and server.is_voter:
                self._log("DEBUG", f"asking for {kind}", ("term", term), ("from", server.id),
                          ("address", server.address))
                self._emit(fx.Send(server.id, server.address, request))
        self._log("DEBUG", "calculated votes needed", ("needed", self._votes_needed()), ("term", term))
        self._count_vote(candidate, self.id, RequestVoteResponse(term, True, pre_vote))

    def _on_vote_response(self, from_id: str, resp: RequestVoteResponse) -> None:
        candidate = self.candidate
        if candidate is None or resp.pre_vote != candidate.pre_vote:
            return
        if not resp.pre_vote and resp.term != self.current_term:
            return  # an answer from an earlier election
        if candidate.has_answered(from_id) or not self.configuration.is_voter(from_id):
            return
        self._count_vote(candidate, from_id, resp)

    def _count_vote(self, candidate: CandidateState, voter: str, resp: RequestVoteResponse) -> None:
        needed = self._votes_needed()
        if resp.pre_vote:
            self._log("DEBUG", "pre-vote received", ("from", voter), ("term", resp.term), ("tally", candidate.tally))
            candidate.record(voter, resp.granted)
            self._log("DEBUG", "pre-vote granted" if resp.granted else "pre-vote denied", ("from", voter),
                      ("term", resp.term), ("tally", candidate.tally))
            term = self.current_term + 1
            outcome = (("tally", candidate.tally), ("refused", len(candidate.refused)), ("votesNeeded", needed))
            if candidate.tally >= needed:
                self._log("INFO", "pre-vote successful, starting election", ("term", term), *outcome)
                self._start_election()
            elif len(candidate.refused) == needed and voter in candidate.refused:
                self._log("INFO", "pre-vote campaign failed, waiting for election timeout", ("term", term),
                          *outcome)
            return
        candidate.record(voter, resp.granted)
        if resp.granted:
            self._log("DEBUG", "vote granted", ("from", voter), ("term", resp.term), ("tally", candidate.tally))
            if candidate.tally >= needed:
                self._log("INFO", "election won", ("term", self.current_term), ("tally", candidate.tally))
                self._become_leader()

    # -- leadership transfer (target side)

    def _on_timeout_now(self, from_id: str, msg: TimeoutNow) -> None:
        if msg.term < self.current_term or not self.configuration.is_voter(self.id):
            return
        self._log("INFO", "received TimeoutNow, starting election", ("from", Bare(from_id)), ("term", msg.term))
        self._start_campaign(transfer=True)

    # -- append entries (follower side)

    def _on_append_entries(self, from_id: str, req: AppendEntries) -> None:
        if req.term < self.current_term:
            self._emit(fx.Send(from_id, req.leader_address,
                               AppendEntriesResponse(self.current_term, False, self.log.last_index,
                                                     req.prev_log_index, heartbeat=req.heartbeat,
                                                     read_seq=req.read_seq)))
            return
        self._follow(req.term, req.leader_id, req.leader_address)

        if req.heartbeat:
            self._commit_to(min(req.leader_commit, self.log.last_index))
            self._emit(fx.Send(from_id, req.leader_address,
                               AppendEntriesResponse(self.current_term, True, self.log.last_index, 0,
                                                     heartbeat=True, read_seq=req.read_seq)))
            return

        prev_index, prev_term, entries = req.prev_log_index, req.prev_log_term, req.entries
        if prev_index < self.log.base_index:
            # entries at or below our base are committed, hence identical (Log Matching)
            skip = self.log.base_index - prev_index
            entries = entries[skip:]
            prev_index, prev_term = self.log.base_index, self.log.base_term
            if not entries and req.prev_log_index + len(req.entries) < self.log.base_index:
                self._reply_append(from_id, req, True, self.log.base_index)
                return
        if prev_index > self.log.last_index:
            self._log("WARN", "failed to get previous log", ("previous-index", prev_index),
                      ("last-index", self.log.last_index), ("error", "log not found"))
            self._reply_append(from_id, req, False)
            return
        our_term = self.log.term_at(prev_index)
        if our_term != prev_term:
            self._log("WARN", "previous log term mis-match", ("ours", our_term), ("remote", prev_term))
            self._reply_append(from_id, req, False)
            return

        new_entries = self._merge_entries(entries)
        if new_entries is None:
            self._reply_append(from_id, req, False)
            return
        match = prev_index + len(entries)
        self._commit_to(min(req.leader_commit, match))
        self._reply_append(from_id, req, True, match)

    def _follow(self, term: int, leader_id: str, leader_address: str) -> None:
        """A current leader spoke: follow it and restart the election timer."""
        if self.role != FOLLOWER:
            self._become_follower(term, leader_id, leader_address)
        self.leader_id = leader_id
        self.leader_address = leader_address
        self.last_leader_contact = self.now
        self._reset_election_timer()

    def _merge_entries(self, entries: tuple[Entry, ...]) -> list[Entry] | None:
        """Append what is new, truncating a conflicting suffix (§5.3 step 3-4)."""
        if not entries:
            return []
        last = self.log.last_index
        start = 0
        for start, entry in enumerate(entries):
            if entry.index > last:
                break
            our_term = self.log.term_at(entry.index)
            if our_term != entry.term:
                if entry.index <= self.commit_index:
                    # rule 2: would drop a committed entry; the leader is confused
                    self._log("ERROR", "failed to append to logs",
                              ("error", f"conflict at committed index {entry.index}"))
                    return None
                self._log("WARN", "clearing log suffix", ("from", entry.index), ("to", last))
                self._emit(fx.TruncateLog(entry.index))
                self.log.truncate_from(entry.index)
                self._recompute_configuration()
                break
        else:
            return []  # every entry already present
        new = list(entries[start:])
        if new:
            self.log.append(new)
            self._emit(fx.AppendToLog(tuple(new)))
            if any(e.type is EntryType.CONFIGURATION for e in new):
                self._recompute_configuration()
                self._configuration_changed()
        return new

    def _reply_append(self, to: str, req: AppendEntries, success: bool, match: int = 0) -> None:
        self._emit(fx.Send(to, req.leader_address,
                           AppendEntriesResponse(self.current_term, success, self.log.last_index,
                                                 req.prev_log_index, match_index=match,
                                                 read_seq=req.read_seq)))

    # -- commitment (every role)

    def _commit_to(self, index: int) -> None:
        if index > self.commit_index:
            self.commit_index = index
            self.membership.recompute_committed(self.log, self.snapshot, self.commit_index)
            self._apply_committed()

    def _apply_committed(self) -> None:
        if self.commit_index > self.last_applied:
            entries = self.log.slice(self.last_applied + 1, self.commit_index)
            self.last_applied = self.commit_index
            if entries:
                self.snapshots.applied(entries)
                self._emit(fx.Apply(tuple(entries)))

    # -- append entries (leader side)

    def _on_append_response(self, from_id: str, resp: AppendEntriesResponse) -> None:
        leader = self.leader
        if leader is None or resp.term < self.current_term:
            return
        pr = leader.progress.get(from_id)
        if pr is None:
            return
        pr.last_contact = self.now
        if resp.heartbeat:
            if resp.read_seq > pr.acked_read_seq:
                pr.acked_read_seq = resp.read_seq
                self._confirm_reads()
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
            moved = pr.acknowledge(resp.match_index, self.now)
            if pr.state is ProgressState.PROBE:
                pr.become_pipeline()
                self._log("INFO", "pipelining replication", ("peer", self._server(from_id)))
            if moved:
                self._maybe_commit(leader)
                self._maybe_send_timeout_now(from_id, pr)
            if self.leader is not None:  # committing our own removal ends leadership
                self._replicate_to(from_id, pr)
            return
        # rejected: ignore answers to requests older than the one we are probing with
        if resp.prev_log_index < pr.match_index:
            return
        if pr.state is ProgressState.PROBE and resp.prev_log_index != pr.next_index - 1:
            return
        if resp.last_log_index < pr.match_index:
            # The peer no longer has entries it acknowledged: its volume was
            # wiped or damaged. Believe it, or next_index stays pinned above
            # its log and the two sides trade rejections forever.
            self._log("WARN", "peer lost acknowledged log entries, replicating again",
                      ("peer", self._server(from_id)), ("match-index", pr.match_index),
                      ("last-index", resp.last_log_index))
            pr.match_index = resp.last_log_index
        if pr.state is ProgressState.PIPELINE:
            self._log("INFO", "aborting pipeline replication", ("peer", self._server(from_id)))
        pr.next_index = max(min(resp.prev_log_index, resp.last_log_index + 1), pr.match_index + 1, 1)
        pr.become_probe()
        self._log("WARN", "appendEntries rejected, sending older logs", ("peer", self._server(from_id)),
                  ("next", pr.next_index))
        self._replicate_to(from_id, pr, allow_empty=True)

    def _replicate_to(self, peer_id: str, pr: Progress, allow_empty: bool = False) -> None:
        """Send the next batch to a peer, as far as its flow control allows."""
        while pr.can_send(self.config.max_inflight):
            if pr.next_index <= self.log.base_index:
                self._send_snapshot(peer_id, pr)
                return
            entries = self.log.slice(pr.next_index, self.log.last_index, self.config.max_append_entries)
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

    def _maybe_commit(self, leader: LeaderState) -> None:
        """Rule 3: advance commit to what a quorum of voters matched, but only
        by counting replicas of an entry from the current term."""
        index = leader.quorum_match_index(self.configuration.voters, self.id, self.log.last_index)
        if index > self.commit_index and self._can_commit_by_counting(index):
            self._advance_commit(leader, index)

    def _can_commit_by_counting(self, index: int) -> bool:
        return self.log.term_at(index) == self.current_term

    def _advance_commit(self, leader: LeaderState, index: int) -> None:
        had_committed_in_term = self.committed_in_term()
        self._commit_to(index)
        if not had_committed_in_term and self.committed_in_term():
            self._confirm_reads()
        if (self.committed_configuration_index == self.configuration_index
                and not self.configuration.is_voter(self.id)):
            self._log("INFO", "removed ourself, transitioning to follower")
            self._become_follower(self.current_term, None, None)
            return
        if leader.pending_config_changes and self._configuration_stable():
            self._change_membership(leader, leader.pending_config_changes.pop(0))

    def _append_as_leader(self, entries: list[Entry]) -> None:
        leader = self.leader
        self.log.append(entries)
        self._emit(fx.AppendToLog(tuple(entries)))
        for peer_id, pr in leader.progress.items():
            self._replicate_to(peer_id, pr)
        self._maybe_commit(leader)

    # -- snapshots (follower side)

    def _on_install_snapshot(self, from_id: str, req: InstallSnapshot) -> None:
        if req.term < self.current_term:
            self._log("INFO", "ignoring installSnapshot request with older term than current term",
                      ("request-term", req.term), ("current-term", self.current_term))
            self._emit(fx.Send(from_id, req.leader_address,
                               InstallSnapshotResponse(self.current_term, False, self.log.last_index)))
            return
        self._follow(req.term, req.leader_id, req.leader_address)
        meta = req.meta
        if meta.index > self.commit_index:
            self._install_snapshot(meta, req.data)
        self._emit(fx.Send(from_id, req.leader_address,
                           InstallSnapshotResponse(self.current_term, True, max(meta.index, self.commit_index))))

    def _install_snapshot(self, meta: SnapshotMeta, data: object) -> None:
        self._emit(fx.RestoreSnapshot(meta, data))
        had_logs = len(self.log) > 0
        if self._keep_log_suffix(meta):
            # Fig. 13 rule 7: our entry at the snapshot index matches, keep what follows
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

    def _keep_log_suffix(self, meta: SnapshotMeta) -> bool:
        return self.log.term_at(meta.index) == meta.term and meta.index <= self.log.last_index

    # -- snapshots (leader side)

    def _on_install_snapshot_response(self, from_id: str, resp: InstallSnapshotResponse) -> None:
        leader = self.leader
        if leader is None or resp.term < self.current_term:
            return
        pr = leader.progress.get(from_id)
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        pr.last_contact = self.now
        if resp.success:
            pr.acknowledge(resp.last_index, self.now)
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

    # ------------------------------------------------------------------ client requests

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

    # -- linearizable reads

    def _on_read_index(self, event: ev.ReadIndex) -> None:
        leader = self.leader
        if leader is None:
            self._not_leader(event.request_id)
            return
        if self._is_lone_voter():
            if self.committed_in_term():
                self._emit(fx.ReadReady(event.request_id, self.commit_index))
            else:
                leader.read_only.add_unconfirmed(event.request_id)
            return
        if leader.read_only.add(event.request_id, self.commit_index if self.committed_in_term() else -1):
            self._heartbeat(leader)

    def _confirm_reads(self) -> None:
        """Release reads whose heartbeat round a quorum echoed. A read that came
        in before this leader committed its no-op gets the commit index at
        release time, which covers every write acknowledged before it."""
        if not self.committed_in_term():
            return
        leader = self.leader
        ready, start_next = leader.read_only.confirm(leader.quorum_read_seq(self.configuration.voters, self.id))
        if self._is_lone_voter():
            ready = leader.read_only.take_all()
        for request_id, index in ready:
            self._emit(fx.ReadReady(request_id, index if index >= 0 else self.commit_index))
        if start_next:
            self._heartbeat(leader)

    # -- membership

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
        new = next_configuration(self.configuration, event.command, event.server_id, event.address)
        if isinstance(new, RefusedChange):
            self._reject(event.request_id, new.reason, new.error)
            return
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

    def _on_bootstrap(self, event: ev.Bootstrap) -> None:
        if self.current_term != 0 or self.log.last_index != 0 or self.snapshot.index != 0:
            self._log("INFO", "bootstrap skipped: node already has state")
            return
        self._set_hard_state(1, None)
        entry = Entry(1, 1, EntryType.CONFIGURATION, event.configuration.encode())
        self.log.append([entry])
        self._emit(fx.AppendToLog((entry,)))
        self._recompute_configuration()
        self._configuration_changed()

    # -- leadership transfer (leader side)

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

    def _maybe_send_timeout_now(self, peer_id: str, pr: Progress) -> None:
        transfer = self.leader.transfer if self.leader is not None else None
        if transfer is not None and transfer.target == peer_id and pr.match_index >= self.log.last_index:
            self._send(peer_id, TimeoutNow(self.current_term, self.id))

    # -- snapshots (local)

    def _take_snapshot(self) -> None:
        if self.last_applied <= self.snapshot.index:
            return
        self._log("INFO", "starting snapshot up to", ("index", self.last_applied))
        self.snapshots.asked(self.last_applied)
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
        to = self.snapshots.compaction_point(self.log, meta.index)
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

    # ------------------------------------------------------------------ dispatch

    _handlers = {
        ev.Tick: _on_tick,
        ev.Receive: _on_receive,
        ev.Propose: _on_propose,
        ev.ProposeBatch: _on_propose_batch,
        ev.ReadIndex: _on_read_index,
        ev.ChangeMembership: _on_change_membership,
        ev.TransferLeadership: _on_transfer_leadership,
        ev.Bootstrap: _on_bootstrap,
        ev.SnapshotTaken: _on_snapshot_taken,
        ev.SnapshotSendFailed: _on_snapshot_send_failed,
        ev.RequestSnapshot: _on_snapshot_requested,
        ev.RestoreUserSnapshot: _on_restore_requested,
    }
    _message_handlers = {
        RequestVoteResponse: _on_vote_response,
        AppendEntries: _on_append_entries,
        AppendEntriesResponse: _on_append_response,
        InstallSnapshot: _on_install_snapshot,
        InstallSnapshotResponse: _on_install_snapshot_response,
        TimeoutNow: _on_timeout_now,
    }


def _peer_status(server: Server, pr: Progress, now: int) -> PeerStatus:
    return PeerStatus(id=server.id, address=server.address, suffrage=server.suffrage,
                      match_index=pr.match_index, next_index=pr.next_index,
                      last_contact=max(0, now - pr.last_contact), state=pr.state.value,
                      inflight=len(pr.inflight),
                      snapshot_index=pr.snapshot_index if pr.state is ProgressState.SNAPSHOT else 0)


def _restore_log(snapshot: SnapshotMeta, stored: tuple[Entry, ...]) -> tuple[RaftLog, int | None]:
    """Rebuild the in-memory log from the store: the entries after the newest
    snapshot, provided they continue it. Returns the log and, when the store
    holds entries that contradict the snapshot, the index to truncate it from."""
    if not stored:
        return RaftLog(snapshot.index, snapshot.term), None
    suffix = [e for e in stored if e.index > snapshot.index]
    at_snapshot = next((e for e in stored if e.index == snapshot.index), None) if snapshot.index else None
    consistent = (
        (not suffix or suffix[0].index == snapshot.index + 1)
        and (at_snapshot is None or at_snapshot.term == snapshot.term)
        and all(b.index == a.index + 1 for a, b in zip(suffix, suffix[1:]))
    )
    if consistent and stored[-1].index >= snapshot.index:
        return RaftLog(snapshot.index, snapshot.term, suffix), None
    # Contradicting entries, or a store that ends before the snapshot (and so
    # could not take the append at snapshot index + 1): clear it.
    return RaftLog(snapshot.index, snapshot.term), stored[0].index
