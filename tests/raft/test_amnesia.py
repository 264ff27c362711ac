"""Rule 7, the amnesia guard, at the core: a node whose durable state is gone
neither votes nor campaigns, and a leader counts nothing a voter answering
from another volume says until it has re-admitted that voter."""

import random

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand, Configuration, Server, Suffrage
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    RequestVote,
    RequestVoteResponse,
)
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50)
THREE = Configuration(tuple(Server(i, f"{i}:1", Suffrage.VOTER, f"{i}-vol1") for i in ("n1", "n2", "n3")))


def node(node_id="n1", volume="n1-vol1", configuration=THREE, entries=None):
    if entries is None:
        entries = (Entry(1, 1, EntryType.CONFIGURATION, configuration.encode()),)
    term = 1 if entries else 0
    n = RaftNode(node_id, f"{node_id}:1", CFG,
                 PersistentState(term, None, 0, None, tuple(entries), volume_id=volume), random.Random(1))
    n.start()
    return n


def logs(effects, level="WARN"):
    return [e.message for e in effects if isinstance(e, fx.Log) and e.level == level]


def answers(effects, kind):
    return [e.message for e in effects if isinstance(e, fx.Send) and isinstance(e.message, kind)]


def vote_request(term=5, pre_vote=False, last_index=1, last_term=1):
    return ev.Receive("n3", RequestVote(term, "n3", "n3:1", last_index, last_term, pre_vote=pre_vote))


def leader():
    n = node()
    n.step(ev.Tick(10_000), 10_000)
    n.step(ev.Receive("n3", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    n.step(ev.Receive("n3", RequestVoteResponse(n.current_term, True)))
    assert n.is_leader
    return n


def test_a_node_without_configuration_refuses_votes_and_pre_votes():
    n = node("n2", "n2-vol2", entries=())
    for pre_vote in (True, False):
        out = n.step(vote_request(pre_vote=pre_vote))
        kind = "pre-vote" if pre_vote else "vote"
        assert f"rejecting {kind} request since we have no configuration" in logs(out)
        assert [a.granted for a in answers(out, RequestVoteResponse)] == [False]
    assert n.voted_for is None and n.status().amnesia_guard == "we have no configuration"


def test_a_voter_on_another_volume_refuses_votes_and_does_not_campaign():
    n = node("n2", "n2-vol2")
    out = n.step(vote_request())
    assert any("rejecting vote request since our volume n2-vol2 is not n2-vol1" in m for m in logs(out))
    assert not answers(out, RequestVoteResponse)[0].granted
    out = n.step(ev.Tick(10_000), 10_000)
    assert any("not triggering a leader election since our volume n2-vol2" in m for m in logs(out))
    assert n.role == "Follower" and not answers(out, RequestVote)


def test_the_same_voter_on_its_own_volume_votes():
    n = node("n2", "n2-vol1")
    out = n.step(vote_request())
    assert answers(out, RequestVoteResponse)[0].granted and n.status().amnesia_guard is None


def test_a_wiped_node_records_the_leader_it_follows_as_its_vote():
    """It may have voted in this term before it lost its disk; the leader is
    the one candidate that vote can have gone to."""
    n = node("n2", "n2-vol2", entries=())
    out = n.step(ev.Receive("n1", AppendEntries(7, "n1", "n1:1", 0, 0, (), 0, heartbeat=True)))
    assert fx.PersistHardState(7, "n1") in out
    out = n.step(ev.Receive("n3", RequestVote(7, "n3", "n3:1", 9, 7)))
    assert not answers(out, RequestVoteResponse)[0].granted


def test_a_leader_does_not_count_a_voter_answering_from_another_volume_and_demotes_it():
    n = leader()
    last = n.log.last_index
    # n2 answers from a new volume: its acknowledgement must not commit the no-op
    out = n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1,
                                                        match_index=last, volume="n2-vol2")))
    assert any(m.startswith("peer's storage was lost") for m in logs(out))
    assert n.commit_index < last
    # n3 on its own volume commits it; the next answer from n2 demotes n2
    n.step(ev.Receive("n3", AppendEntriesResponse(n.current_term, True, last, last - 1,
                                                  match_index=last, volume="n3-vol1")))
    assert n.commit_index == last
    out = n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, 0, heartbeat=True,
                                                        volume="n2-vol2")))
    assert any("command=DemoteVoter" in str(e.fields) or e.message == "updating configuration"
               for e in out if isinstance(e, fx.Log))
    demoted = n.configuration.get("n2")
    assert demoted.suffrage is Suffrage.NONVOTER and demoted.volume == "n2-vol1"


def test_promotion_records_the_new_volume_and_says_so():
    n = leader()
    last = n.log.last_index
    for peer in ("n2", "n3"):
        n.step(ev.Receive(peer, AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last,
                                                      volume=f"{peer}-vol2" if peer == "n2" else "n3-vol1")))
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, 0, heartbeat=True, volume="n2-vol2")))
    assert not n.configuration.is_voter("n2")
    # the demotion commits with n3, n2 catches up; autopilot asks to promote it
    last = n.log.last_index
    n.step(ev.Receive("n3", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last,
                                                  volume="n3-vol1")))
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last,
                                                  volume="n2-vol2")))
    out = n.step(ev.ChangeMembership(5, ConfigCommand.ADD_VOTER, "n2", "n2:1"))
    assert "re-admitting a voter whose storage was lost: it has caught up on a new volume" in logs(out)
    assert n.configuration.get("n2") == Server("n2", "n2:1", Suffrage.VOTER, "n2-vol2")


def test_a_volume_change_under_the_leader_starts_the_peer_over():
    n = leader()
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last,
                                                  volume="n2-vol1")))
    assert n.progress["n2"].match_index == last
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, 0, 0, heartbeat=True, volume="n2-vol2")))
    assert n.progress["n2"].match_index == 0 and n.progress["n2"].volume == "n2-vol2"


def test_heartbeat_answers_below_the_match_index_reset_the_follower_in_a_quiet_cluster():
    n = leader()
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)))
    assert n.progress["n2"].match_index == last
    lost = ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last - 1, 0, heartbeat=True))
    out = n.step(lost)
    assert n.progress["n2"].match_index == last, "one answer may have been overtaken: wait"
    later = n.now + 2 * CFG.heartbeat_interval
    n.step(ev.Tick(later), later)
    out = n.step(lost)
    assert "peer lost acknowledged log entries, replicating again" in logs(out)
    assert n.progress["n2"].match_index == last - 1
    sent = answers(out, AppendEntries)
    assert sent and sent[0].prev_log_index == last - 1


def test_a_lone_bootstrap_waits_and_gives_up_when_a_cluster_speaks():
    n = node("n1", "n1-vol2", entries=())
    alone = Configuration((Server("n1", "n1:1"),))
    out = n.step(ev.Bootstrap(alone, wait_for_cluster=True))
    assert not [e for e in out if isinstance(e, fx.AppendToLog)]
    out = n.step(ev.Receive("n2", AppendEntries(6, "n2", "n2:1", 0, 0, (), 0, heartbeat=True)))
    assert any(m.startswith("not bootstrapping: an existing cluster has this node as a member") for m in logs(out))
    out = n.step(ev.Tick(10_000), 10_000)
    assert n.log.last_index == 0 and n.role == "Follower"


def test_a_lone_bootstrap_that_hears_nobody_forms_its_cluster_with_its_volume():
    n = node("n1", "n1-vol1", entries=())
    n.step(ev.Bootstrap(Configuration((Server("n1", "n1:1"),)), wait_for_cluster=True))
    n.step(ev.Tick(10_000), 10_000)
    assert n.is_leader
    assert n.configuration.get("n1").volume == "n1-vol1"


def test_a_lone_bootstrap_listens_at_least_the_wait_it_was_given():
    """An election timeout is too short for a leader whose redials to the
    wiped node have backed off: the node listens for the wait it is given."""
    n = node("n1", "n1-vol1", entries=())
    out = n.step(ev.Bootstrap(Configuration((Server("n1", "n1:1"),)), wait_for_cluster=True, wait_at_least=5000))
    assert "waiting before bootstrapping, in case a cluster already has this node as a member" in logs(out, "INFO")
    n.step(ev.Tick(4000), 4000)
    assert n.log.last_index == 0 and not n.is_leader
    out = n.step(ev.Receive("n2", AppendEntries(6, "n2", "n2:1", 0, 0, (), 0, heartbeat=True)))
    assert any(m.startswith("not bootstrapping") for m in logs(out))
    n.step(ev.Tick(20_000), 20_000)
    assert n.log.last_index == 0 and not n.is_leader
