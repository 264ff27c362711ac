"""Every refusal the core emits carries the reason that fits it, and keeps
the text users see."""

import random
from dataclasses import replace

import pytest

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand, Configuration, Server
from raftkv.raft.errors import RejectReason
from raftkv.raft.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryType,
                                  RequestVoteResponse)
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50)
THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))
ALONE = Configuration((Server("n1", "n1:1"),))


def node(configuration=THREE, config=CFG):
    entry = Entry(1, 1, EntryType.CONFIGURATION, configuration.encode())
    n = RaftNode("n1", "n1:1", config, PersistentState(1, None, 0, None, (entry,)), random.Random(1))
    n.start()
    return n


def follower_of_n2():
    n = node()
    n.step(ev.Receive("n2", AppendEntries(1, "n2", "n2:1", 0, 0, (), 0, heartbeat=True)), 10)
    return n


def leader(configuration=THREE, config=CFG, committed=True):
    n = node(configuration, config)
    n.step(ev.Tick(10_000), 10_000)
    if len(configuration.voters) > 1:
        n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
        n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
        if committed:
            last = n.log.last_index
            n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1,
                                                          match_index=last)))
    assert n.is_leader and n.committed_in_term() == committed
    return n


def handing_over():
    """A leader transferring to n3, which has not caught up: the transfer waits."""
    n = leader(config=replace(CFG, check_quorum=False))
    n.step(ev.TransferLeadership(99, "n3"))
    return n


def deposed(n):
    return n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term + 1, False, 0, 0)))


def read_then_deposed():
    n = leader()
    n.step(ev.ReadIndex(1))
    return deposed(n)


def change_queued_then_deposed():
    n = leader(committed=False)
    queued = n.step(ev.ChangeMembership(1, ConfigCommand.ADD_NONVOTER, "n4", "n4:1"))
    assert not [e for e in queued if isinstance(e, (fx.Proposed, fx.Rejected))]  # waits for the no-op
    return deposed(n)


def transfer_times_out():
    n = handing_over()
    n.step(ev.ReadIndex(1))  # any request id; the transfer's own is 99
    later = n.now + CFG.election_timeout
    return n.step(ev.Tick(later), later)


def demoting_the_last_intact_peer():
    """n2 answers from a new volume (it lost its storage) before the leader
    could demote it; an operator then asks to demote n3."""
    with_volumes = Configuration(tuple(Server(i, f"{i}:1", volume=f"{i}-v1") for i in ("n1", "n2", "n3")))
    n = leader(with_volumes, committed=False)
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last,
                                                  volume="n2-v2")))
    n.step(ev.Receive("n3", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last,
                                                  volume="n3-v1")))
    assert n.committed_in_term()
    return n.step(ev.ChangeMembership(1, ConfigCommand.DEMOTE_VOTER, "n3"))


NOT_LEADER = "node is not the leader"
IN_PROGRESS = "leadership transfer in progress"
ADD_N4 = ev.ChangeMembership(1, ConfigCommand.ADD_VOTER, "n4", "n4:1")

CASES = {
    # name: (effects of the refused request, request id, reason, error text)
    "follower/propose": (lambda: follower_of_n2().step(ev.Propose(1, b"x")), 1, RejectReason.NOT_LEADER, NOT_LEADER),
    "follower/batch": (lambda: follower_of_n2().step(ev.ProposeBatch((ev.Propose(1, b"x"),))),
                       1, RejectReason.NOT_LEADER, NOT_LEADER),
    # (with follower reads on, a follower asks its leader instead: test_follower_reads.py)
    "follower/read": (lambda: node().step(ev.ReadIndex(1)), 1, RejectReason.NOT_LEADER, NOT_LEADER),
    "follower/membership": (lambda: follower_of_n2().step(ADD_N4), 1, RejectReason.NOT_LEADER, NOT_LEADER),
    "follower/transfer": (lambda: follower_of_n2().step(ev.TransferLeadership(1)),
                          1, RejectReason.NOT_LEADER, NOT_LEADER),
    "follower/restore": (lambda: follower_of_n2().step(ev.RestoreUserSnapshot(1, None)),
                         1, RejectReason.NOT_LEADER, NOT_LEADER),
    "transfer/propose": (lambda: handing_over().step(ev.Propose(1, b"x")),
                         1, RejectReason.TRANSFER_IN_PROGRESS, IN_PROGRESS),
    "transfer/batch": (lambda: handing_over().step(ev.ProposeBatch((ev.Propose(1, b"x"),))),
                       1, RejectReason.TRANSFER_IN_PROGRESS, IN_PROGRESS),
    "transfer/membership": (lambda: handing_over().step(ADD_N4), 1, RejectReason.TRANSFER_IN_PROGRESS, IN_PROGRESS),
    "transfer/transfer": (lambda: handing_over().step(ev.TransferLeadership(1, "n2")),
                          1, RejectReason.TRANSFER_IN_PROGRESS, IN_PROGRESS),
    "transfer/restore": (lambda: handing_over().step(ev.RestoreUserSnapshot(1, None)),
                         1, RejectReason.TRANSFER_IN_PROGRESS, IN_PROGRESS),
    "lost/read": (read_then_deposed, 1, RejectReason.LEADERSHIP_LOST, "leadership lost while confirming the read"),
    "lost/membership": (change_queued_then_deposed, 1, RejectReason.LEADERSHIP_LOST, "leadership lost"),
    "membership/unknown": (lambda: leader().step(ev.ChangeMembership(1, ConfigCommand.REMOVE_SERVER, "n9")),
                           1, RejectReason.UNKNOWN_SERVER, "unknown server 'n9'"),
    "membership/no-voters": (lambda: leader(ALONE).step(ev.ChangeMembership(1, ConfigCommand.DEMOTE_VOTER, "n1")),
                             1, RejectReason.NO_VOTERS_LEFT, "the change would leave no voters"),
    "membership/quorum-at-risk": (demoting_the_last_intact_peer, 1, RejectReason.QUORUM_AT_RISK,
                                  "removing 'n3' would leave 1 of 2 voters with their storage, fewer than a "
                                  "quorum; n2 lost theirs"),
    "transfer/timeout": (transfer_times_out, 99, RejectReason.TRANSFER_TIMEOUT, "leadership transfer timeout"),
    "transfer/self": (lambda: leader().step(ev.TransferLeadership(1, "n1")),
                      1, RejectReason.TRANSFER_TO_SELF, "cannot transfer leadership to itself"),
    "transfer/unknown": (lambda: leader().step(ev.TransferLeadership(1, "n9")),
                         1, RejectReason.PEER_NOT_FOUND, "cannot find peer 'n9'"),
    "transfer/nobody": (lambda: leader(ALONE).step(ev.TransferLeadership(1)),
                        1, RejectReason.PEER_NOT_FOUND, "cannot find peer"),
    "snapshot/nothing": (lambda: node().step(ev.RequestSnapshot(1)),
                         1, RejectReason.NOTHING_TO_SNAPSHOT, "nothing new to snapshot"),
    "restore/early": (lambda: leader(committed=False).step(ev.RestoreUserSnapshot(1, None)),
                      1, RejectReason.RESTORE_NOT_READY,
                      "cannot restore while the leader's first entry or a configuration change is "
                      "uncommitted; retry"),
}


@pytest.mark.parametrize("name", CASES)
def test_refusal_carries_its_reason_and_text(name):
    run, request_id, reason, error = CASES[name]
    refusals = [e for e in run() if isinstance(e, fx.Rejected) and e.request_id == request_id]
    assert len(refusals) == 1, refusals
    assert refusals[0].reason is reason
    assert refusals[0].error == error


def test_not_leader_names_the_known_leader():
    refusal = [e for e in follower_of_n2().step(ev.Propose(1, b"x")) if isinstance(e, fx.Rejected)][0]
    assert (refusal.leader_id, refusal.leader_address) == ("n2", "n2:1")


def test_every_reason_has_a_refusal_path():
    assert {reason for _, _, reason, _ in CASES.values()} == set(RejectReason)
