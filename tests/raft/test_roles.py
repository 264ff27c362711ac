"""Role state exists only in its role: a leader's bookkeeping cannot outlive
its leadership, nor a candidate's tally its campaign."""

import random

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryType, RequestVoteResponse,
                                  TimeoutNow)
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode
from raftkv.raft.roles import CandidateState, LeaderState

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50, check_quorum=False)
THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))


def node():
    entry = Entry(1, 1, EntryType.CONFIGURATION, THREE.encode())
    n = RaftNode("n1", "n1:1", CFG, PersistentState(1, None, 0, None, (entry,)), random.Random(1))
    n.start()
    return n


def elect(n):
    n.step(ev.Tick(n.now + 10_000), n.now + 10_000)
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)))
    assert n.is_leader and n.committed_in_term()
    return n


def test_each_role_holds_only_its_own_state():
    n = node()
    assert (n.role, n.leader, n.candidate) == ("Follower", None, None) and n.progress == {}
    n.step(ev.Tick(10_000), 10_000)
    assert n.role == "Candidate" and isinstance(n.candidate, CandidateState) and n.leader is None
    assert n.candidate.pre_vote and n.candidate.granted == {"n1"}
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    assert not n.candidate.pre_vote  # the vote round replaced the pre-vote round
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
    assert n.role == "Leader" and isinstance(n.leader, LeaderState) and n.candidate is None
    assert set(n.progress) == {"n2", "n3"} and n.leader.first_index_of_term == 2
    n.step(ev.Receive("n2", AppendEntries(n.current_term + 1, "n2", "n2:1", 0, 0, (), 0, heartbeat=True)))
    assert (n.role, n.leader, n.candidate) == ("Follower", None, None) and n.progress == {}


def test_stepping_down_answers_what_only_a_leader_could_finish():
    n = elect(node())
    n.step(ev.TransferLeadership(1, "n3"))  # n3 has not caught up: the transfer waits
    out = n.step(ev.Receive("n3", AppendEntriesResponse(n.current_term + 1, False, 0, 0)))
    assert [e for e in out if isinstance(e, fx.Completed)] == [fx.Completed(1)]
    assert n.leader is None


def test_a_leader_that_campaigns_keeps_nothing_of_its_leadership():
    n = elect(node())
    n.step(ev.TransferLeadership(1, "n3"))
    n.step(ev.Receive("n1", TimeoutNow(n.current_term, "n1")))
    assert n.role == "Candidate" and n.leader is None
    elect(n)
    # a new leadership starts without the old transfer: proposals are taken
    out = n.step(ev.Propose(2, b"x"))
    assert [e.request_id for e in out if isinstance(e, fx.Proposed)] == [2]
