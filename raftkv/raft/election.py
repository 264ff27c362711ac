"""Elections: a part of :class:`~raftkv.raft.node.RaftNode` (Raft §5.2, thesis §9.6).

Theory of operation: when a follower hears no leader for an election timeout
it campaigns: unless pre-vote is off or a leadership transfer started it, a
pre-vote round first asks whether voters *would* grant a vote for the next
term, without anyone changing term, so a partitioned node cannot inflate
terms; a quorum of pre-votes starts the real election. A voter grants one vote
per term, only to a candidate whose log is at least as up to date as its own
(§5.4.1), and not while it hears from a live leader (leader stickiness) unless
the candidate was told to take over by TimeoutNow. A quorum of votes makes the
candidate leader.
"""

from __future__ import annotations

from . import effects as fx
from .effects import Bare
from .fields import NodeFields
from .messages import RequestVote, RequestVoteResponse, TimeoutNow
from .roles import CANDIDATE, CandidateState
from .rules import (
    ALREADY_VOTED,
    LEADER_HEARD,
    LOG_SHORTER,
    LOG_TERM_OLDER,
    PreVoteDecision,
    PreVoteRequest,
    VoteDecision,
    VoteRequest,
)


class Election(NodeFields):
    """Mixed into RaftNode; reads and changes its fields."""

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
        reason = self._amnesia_reason()
        if reason is not None:
            if not self._warned_no_election:
                self._log("WARN", f"heartbeat timeout reached, not triggering a leader election since {reason}")
            return False
        return True

    def _start_campaign(self, transfer: bool = False) -> None:
        """Become a candidate: pre-vote first unless disabled or a transfer."""
        was_candidate = self.candidate is not None
        # A leader only gets here by a TimeoutNow of its own term, which no
        # peer sends; its leadership ends without answering anything.
        self.leader = None
        self.candidate = CandidateState(transfer)
        if not was_candidate:
            self._state_changed()
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

    def _request_votes(self, term: int, pre_vote: bool) -> None:
        candidate = self.candidate
        assert candidate is not None  # _start_campaign made us one
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

    def _on_request_vote(self, from_id: str, req: RequestVote) -> None:
        kind = "pre-vote" if req.pre_vote else "vote"
        grant = False
        reply_term = self.current_term
        try:
            amnesia = self._amnesia_reason()
            if amnesia is not None:
                # rule 7: whatever this node promised before is gone with its
                # volume; a vote now could elect a leader without them
                self._log("WARN", f"rejecting {kind} request since {amnesia}",
                          ("from", Bare(req.candidate_address)))
                return
            # A server that only an uncommitted entry removed may still be a
            # voter when the dust settles: the committed configuration counts
            # too, or an up-to-date server could be refused for good.
            committed = self.committed_configuration
            if (self.configuration.servers and not self.configuration.has(req.candidate_id)
                    and not committed.has(req.candidate_id)):
                self._log("WARN", f"rejecting {kind} request since node is not in configuration",
                          ("from", Bare(req.candidate_address)))
                return
            # only a voter we know can have been handed leadership (TimeoutNow)
            transfer = req.leadership_transfer and self.configuration.is_voter(req.candidate_id)
            heard = not transfer and self._has_live_leader() and self.leader_id != req.candidate_id
            pre = None
            if req.pre_vote:
                pre = self.rules.grant_pre_vote(PreVoteRequest(
                    self.current_term, self.log.last_index, self.log.last_term, req.candidate_id, req.term,
                    req.last_log_index, req.last_log_term, heard))
                heard = pre.reason == LEADER_HEARD and not pre.granted
            if heard:
                self._log("WARN", f"rejecting {kind} request since we have a leader",
                          ("from", Bare(req.candidate_address)), ("leader", Bare(self.leader_address or "")),
                          ("leader-id", self.leader_id or ""))
                return
            if pre is not None:
                if req.term > self.current_term:
                    self._log("DEBUG", "received a requestPreVote with a newer term, grant the pre-vote")
                    if pre.enter_term:
                        self._become_follower(req.term, None, None)
                        reply_term = self.current_term
            elif req.term > self.current_term:
                self._log("DEBUG", "lost leadership because received a requestVote with a newer term")
                self._become_follower(req.term, None, None)
                reply_term = self.current_term
            # A member whose log goes further than ours has seen entries we
            # have not, its promotion perhaps: ours is the stale view.
            newer_history = (req.last_log_term, req.last_log_index) > (self.log.last_term, self.log.last_index)
            if (req.term >= self.current_term and self.configuration.servers
                    and not self.configuration.is_voter(req.candidate_id)
                    and not committed.is_voter(req.candidate_id) and not newer_history):
                self._log("WARN", f"rejecting {kind} request since node is not a voter",
                          ("from", Bare(req.candidate_address)))
                return
            decision = pre or self.rules.grant_vote(VoteRequest(
                self.current_term, self.voted_for, self.log.last_index, self.log.last_term, req.candidate_id,
                req.term, req.last_log_index, req.last_log_term))
            self._explain_vote(req, kind, decision)
            grant = decision.granted
            if grant and not req.pre_vote:
                self._set_hard_state(self.current_term, req.candidate_id)
            if decision.restart_timer:
                self._reset_election_timer()
        finally:
            known = self.configuration.get(from_id)
            if known is not None or not self.configuration.servers:
                # A stranger gets no answer: one sent to the address its
                # request names would let anyone make us dial anywhere.
                self._emit(fx.Send(from_id, known.address if known is not None and known.address
                                   else req.candidate_address,
                                   RequestVoteResponse(reply_term, grant, req.pre_vote)))

    def _explain_vote(self, req: RequestVote, kind: str, decision: VoteDecision | PreVoteDecision) -> None:
        """hashicorp's line for the rule's answer (rules.grant_vote decides)."""
        reason = decision.reason
        if reason == ALREADY_VOTED:
            self._log("INFO", "duplicate requestVote for same term", ("term", req.term))
            if decision.granted:
                self._log("WARN", "duplicate requestVote from", ("candidate", Bare(req.candidate_address)))
        elif reason == LOG_TERM_OLDER:
            self._log("WARN", f"rejecting {kind} request since our last term is greater",
                      ("candidate", Bare(req.candidate_address)), ("last-term", self.log.last_term),
                      ("last-candidate-term", req.last_log_term))
        elif reason == LOG_SHORTER:
            self._log("WARN", f"rejecting {kind} request since our last index is greater",
                      ("candidate", Bare(req.candidate_address)), ("last-index", self.log.last_index),
                      ("last-candidate-index", req.last_log_index))

    def _on_timeout_now(self, from_id: str, msg: TimeoutNow) -> None:
        if msg.term < self.current_term or not self.configuration.is_voter(self.id):
            return
        amnesia = self._amnesia_reason()
        if amnesia is not None:
            self._log("WARN", f"ignoring TimeoutNow since {amnesia}", ("from", Bare(from_id)))
            return
        self._log("INFO", "received TimeoutNow, starting election", ("from", Bare(from_id)), ("term", msg.term))
        self._handover_term = msg.term   # its leader ended its read lease before sending this (lease.py)
        self._start_campaign(transfer=True)
