"""Rule 8 at the core: a message from a stranger, in someone else's name, or
with values no honest server sends changes nothing."""

import random

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50)
THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))


def node(node_id="n2"):
    entries = (Entry(1, 1, EntryType.CONFIGURATION, THREE.encode()), Entry(2, 1, EntryType.COMMAND, b"x"))
    n = RaftNode(node_id, f"{node_id}:1", CFG, PersistentState(1, None, 0, None, entries), random.Random(1))
    n.start()
    return n


def following_n1():
    n = node()
    n.step(ev.Receive("n1", AppendEntries(2, "n1", "n1:1", 2, 1, (), 2, heartbeat=True)), 10)
    assert n.leader_id == "n1" and n.current_term == 2
    return n


def leader():
    n = node("n1")
    n.step(ev.Tick(10_000), 10_000)
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
    assert n.is_leader
    return n


def warnings(effects):
    return [e.message for e in effects if isinstance(e, fx.Log) and e.level == "WARN"]


def unchanged(n, term, leader_id, last):
    assert (n.current_term, n.leader_id, n.log.last_index) == (term, leader_id, last)


def test_a_stranger_cannot_raise_the_term_lead_or_write_while_the_leader_is_heard():
    n = following_n1()
    forged = AppendEntries(1000, "evil", "evil:1", 2, 1, (Entry(3, 1000, EntryType.COMMAND, b"FORGED"),), 3)
    out = n.step(ev.Receive("evil", forged), 20)
    assert ("ignoring AppendEntries: the sender is not in the configuration, and we follow a leader that is"
            in warnings(out))
    unchanged(n, 2, "n1", 2)
    assert not [e for e in out if isinstance(e, (fx.PersistHardState, fx.AppendToLog, fx.Send))]


def test_a_stranger_cannot_depose_a_leader():
    n = leader()
    term = n.current_term
    for msg in (AppendEntries(term + 1000, "evil", "evil:1", 0, 0, (), 0, heartbeat=True),
                AppendEntriesResponse(term + 1000, False, 0, 0),
                RequestVote(term + 1000, "evil", "evil:1", 99, term, leadership_transfer=True),
                TimeoutNow(term, "evil")):
        n.step(ev.Receive("evil", msg))
        assert n.is_leader and n.current_term == term, msg


def test_a_message_in_another_members_name_is_ignored():
    n = following_n1()
    out = n.step(ev.Receive("n3", AppendEntries(9, "n1", "n1:1", 2, 1, (), 2, heartbeat=True)), 20)
    assert "ignoring AppendEntries: it speaks for 'n1', not for its sender" in warnings(out)
    out = n.step(ev.Receive("evil", RequestVote(9, "n3", "n3:1", 2, 1)), 20)
    assert "ignoring RequestVote: it speaks for 'n3', not for its sender" in warnings(out)
    unchanged(n, 2, "n1", 2)


def test_only_this_terms_leader_hands_leadership_over():
    n = following_n1()
    out = n.step(ev.Receive("n3", TimeoutNow(2, "n3")), 20)
    assert "ignoring TimeoutNow: only this term's leader hands leadership over" in warnings(out)
    assert n.role == "Follower"
    n.step(ev.Receive("n1", TimeoutNow(2, "n1")), 20)
    assert n.role == "Candidate"


def test_absurd_terms_and_indexes_are_refused_and_never_persisted():
    n = following_n1()
    for msg in (AppendEntries(2 ** 64 - 1, "n1", "n1:1", 2, 1, (), 2),
                RequestVote(2 ** 63, "n3", "n3:1", 2, 1),
                AppendEntries(2, "n1", "n1:1", 2, 1, (Entry(4, 2),), 2),           # skips index 3
                AppendEntries(2, "n1", "n1:1", 2, 1, (Entry(3, 7),), 2),           # entry newer than the message
                RequestVote(3, "n3", "n3:1", 2, 9)):                                # log newer than its term
        later = n.now + 5000  # past the rate limit of the warning about one sender
        out = n.step(ev.Receive(msg.leader_id if isinstance(msg, AppendEntries) else "n3", msg), later)
        assert any(w.startswith("ignoring ") for w in warnings(out)), msg
        assert not [e for e in out if isinstance(e, fx.PersistHardState)], msg
    unchanged(n, 2, "n1", 2)


def test_a_leader_ignores_acknowledgements_of_entries_it_does_not_have():
    n = leader()
    out = n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, 10 ** 9, 2, match_index=10 ** 9)))
    assert any("beyond our last index" in w for w in warnings(out))
    assert n.progress["n2"].match_index <= n.log.last_index


def test_warnings_about_one_sender_are_rate_limited():
    n = following_n1()
    said = []
    for i in range(50):
        out = n.step(ev.Receive("evil", AppendEntries(5, "evil", "evil:1", 0, 0, (), 0, heartbeat=True)), 20 + i)
        said += warnings(out)
    assert len(said) == 1


def test_a_follower_that_heard_no_leader_follows_one_it_does_not_know_yet():
    """Its configuration may predate the leader's election: cut off while n4
    joined and took over, it must still be able to learn from n4."""
    n = node()
    out = n.step(ev.Receive("n4", AppendEntries(5, "n4", "n4:1", 2, 1, (), 2, heartbeat=True)), 10_000)
    assert n.leader_id == "n4" and n.current_term == 5
    assert not warnings(out)


def test_a_node_without_configuration_takes_a_leaders_messages_only():
    n = RaftNode("n9", "n9:1", CFG, PersistentState(), random.Random(1))
    n.start()
    out = n.step(ev.Receive("n1", AppendEntriesResponse(7, True, 0, 0)))
    assert any(w.startswith("ignoring AppendEntriesResponse: this node has no configuration") for w in warnings(out))
    assert n.current_term == 0
    n.step(ev.Receive("n1", AppendEntries(7, "n1", "n1:1", 0, 0, (), 0, heartbeat=True)))
    assert n.leader_id == "n1" and n.current_term == 7


def test_a_strangers_vote_request_is_refused_without_dialing_the_address_it_names():
    n = node()
    out = n.step(ev.Receive("evil", RequestVote(5, "evil", "10.9.9.9:22", 99, 4)), 10_000)
    assert not [e for e in out if isinstance(e, fx.Send)]
    assert n.current_term == 1 and n.voted_for is None
    out = n.step(ev.Receive("n3", RequestVote(5, "n3", "10.9.9.9:22", 99, 4)), 10_000)
    sends = [e for e in out if isinstance(e, fx.Send)]
    assert [s.address for s in sends] == ["n3:1"], "a member is answered at its configured address"
