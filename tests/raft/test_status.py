"""The frozen status view tells the outside world all it reads of a node."""

import dataclasses
import random

import pytest

from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import AppendEntries, AppendEntriesResponse, Entry, EntryType, RequestVoteResponse
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode
from raftkv.raft.status import NodeStatus

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50)
THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))


def node(entries=()):
    config_entry = Entry(1, 1, EntryType.CONFIGURATION, THREE.encode())
    n = RaftNode("n1", "n1:1", CFG, PersistentState(1, None, 0, None, (config_entry, *entries)),
                 random.Random(1))
    n.start()
    return n


def elect(n):
    n.step(ev.Tick(10_000), 10_000)
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
    assert n.is_leader
    return n


def test_a_fresh_follower_has_no_leader_and_no_peers():
    st = node().status()
    assert (st.role, st.term, st.leader_id, st.last_contact, st.peers) == ("Follower", 1, None, -1, ())
    assert not st.committed_in_term and not st.is_leader
    assert (st.first_index, st.last_index, st.last_log_term, st.base_index, st.base_term) == (1, 1, 1, 0, 0)
    assert st.configuration == THREE and st.configuration_index == 1
    assert st.committed_configuration == Configuration() and st.committed_configuration_index == 0


def test_a_follower_reports_the_age_of_its_leaders_last_contact():
    n = node()
    n.step(ev.Receive("n2", AppendEntries(1, "n2", "n2:1", 0, 0, (), 1, heartbeat=True)), 100)
    n.step(ev.Tick(130), 130)
    st = n.status()
    assert (st.leader_id, st.leader_address, st.last_contact, st.now) == ("n2", "n2:1", 30, 130)
    assert st.commit_index == st.last_applied == 1
    assert st.committed_configuration_index == 1


def test_a_leader_reports_each_peers_replication():
    n = elect(node())
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)),
           n.now + 7)
    st = n.status()
    assert st.is_leader and st.last_contact == 0 and st.committed_in_term and st.transfer_target is None
    assert [p.id for p in st.peers] == ["n2", "n3"]
    n2, n3 = st.peer("n2"), st.peer("n3")
    assert (n2.match_index, n2.next_index, n2.state, n2.last_contact, n2.is_voter) == (last, last + 1,
                                                                                        "pipeline", 0, True)
    assert (n3.match_index, n3.state, n3.last_contact, n3.address) == (0, "probe", 7, "n3:1")
    assert st.peer("n9") is None


def test_the_status_is_frozen_and_does_not_follow_the_node():
    n = node()
    st = n.status()
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.term = 5  # type: ignore[misc]
    elect(n)
    assert st.role == "Follower" and n.status().role == "Leader"


def test_to_dict_keeps_the_status_json_shape():
    n = elect(node())
    d = n.status().to_dict()
    assert d == {
        "id": "n1", "state": "Leader", "term": n.current_term, "last_log_index": 2, "last_log_term": n.current_term,
        "commit_index": 0, "applied_index": 0, "last_snapshot_index": 0, "last_snapshot_term": 0,
        "last_contact": 0, "leader_id": "n1", "leader_address": "n1:1", "configuration_index": 1,
        "volume_id": "", "amnesia_guard": None,
    }


def test_entries_are_clamped_to_what_the_log_holds():
    n = node(entries=(Entry(2, 1), Entry(3, 1)))
    assert [e.index for e in n.entries(0, 99)] == [1, 2, 3]
    assert [e.index for e in n.entries(2, 2)] == [2]
    assert n.entries(5, 9) == ()
    assert isinstance(n.status(), NodeStatus)
    assert (n.term_at(0), n.term_at(3), n.term_at(4)) == (0, 1, None)
