"""A follower remembers the highest commit index a leader announced to it
(``NodeStatus.leader_commit``), which ``/readyz`` compares with what the
node has applied; a leader's is its own commit index."""

import random

from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import AppendEntries, Entry, EntryType, RequestVoteResponse
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50)
THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))


def node():
    n = RaftNode("n1", "n1:1", CFG, PersistentState(1, None, 0, None,
                                                    (Entry(1, 1, EntryType.CONFIGURATION, THREE.encode()),)),
                 random.Random(1))
    n.start()
    return n


def append(prev, entries, commit, heartbeat=False):
    return ev.Receive("n2", AppendEntries(1, "n2", "n2:1", prev, 1 if prev else 0, tuple(entries), commit,
                                          heartbeat=heartbeat))


def test_a_lagging_follower_learns_the_leaders_commit_index_before_it_holds_the_entries():
    n = node()
    n.step(append(1, [Entry(2, 1, EntryType.NOOP, b"")], 40))
    st = n.status()
    assert (st.leader_commit, st.commit_index) == (40, 2)


def test_a_heartbeat_capped_at_the_followers_match_never_lowers_it():
    n = node()
    n.step(append(1, [Entry(2, 1, EntryType.NOOP, b"")], 40))
    n.step(append(0, [], 2, heartbeat=True))
    assert n.status().leader_commit == 40


def test_an_append_from_a_stale_term_is_not_news():
    n = node()
    n.current_term = 3
    n.step(append(1, [Entry(2, 1, EntryType.NOOP, b"")], 40))
    assert n.status().leader_commit == 0


def test_a_leaders_is_its_own_commit_index():
    n = node()
    n.step(ev.Tick(10_000), 10_000)
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
    st = n.status()
    assert st.is_leader and st.leader_commit == st.commit_index
