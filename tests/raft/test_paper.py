"""One small test per rule of the Raft paper, driving RaftNode directly."""

import random

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand, Configuration, Server
from raftkv.raft.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryType, RequestVote,
                                  RequestVoteResponse)
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

CFG = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50)
THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))


def node(node_id="n1", entries=(), term=1, voted_for=None, commit=0):
    config_entry = Entry(1, 1, EntryType.CONFIGURATION, THREE.encode())
    n = RaftNode(node_id, f"{node_id}:1", CFG,
                 PersistentState(term, voted_for, commit, None, (config_entry, *entries)),
                 random.Random(1))
    n.start()
    return n


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def sent(effects, message_type):
    return [e for e in of(effects, fx.Send) if isinstance(e.message, message_type)]


def elect(n):
    """Win an election for n with n2's vote."""
    n.step(ev.Tick(10_000), 10_000)
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term + 1, True, pre_vote=True)))
    n.step(ev.Receive("n2", RequestVoteResponse(n.current_term, True)))
    assert n.is_leader
    return n


def test_5_1_reply_with_newer_term_turns_candidate_into_follower():
    n = node()
    n.step(ev.Tick(10_000), 10_000)
    assert n.role == "Candidate"
    out = n.step(ev.Receive("n2", AppendEntries(5, "n2", "n2:1", 0, 0, (), 0, heartbeat=True)))
    assert n.role == "Follower" and n.current_term == 5
    assert of(out, fx.PersistHardState)[0].term == 5


def test_5_1_stale_term_append_is_rejected_with_current_term():
    n = node(term=3)
    out = n.step(ev.Receive("n2", AppendEntries(2, "n2", "n2:1", 1, 1, (), 0)))
    resp = sent(out, AppendEntriesResponse)[0].message
    assert not resp.success and resp.term == 3


def test_5_2_election_timeout_is_randomized_between_t_and_2t():
    deadlines = {node().election_deadline for _ in range(1)}
    n = node()
    for _ in range(50):
        n._reset_election_timer()
        deadlines.add(n.election_deadline - n.now)
    assert min(deadlines) >= 100 and max(deadlines) <= 200 and len(deadlines) > 5


def test_5_2_vote_is_persisted_before_the_grant_is_sent():
    n = node()
    out = n.step(ev.Receive("n2", RequestVote(2, "n2", "n2:1", 1, 1)), 10_000)
    kinds = [type(e) for e in out if not isinstance(e, fx.Log)]
    assert kinds.index(fx.PersistHardState) < kinds.index(fx.Send)
    assert sent(out, RequestVoteResponse)[0].message.granted
    assert n.voted_for == "n2"


def test_5_2_one_vote_per_term():
    n = node()
    n.step(ev.Receive("n2", RequestVote(2, "n2", "n2:1", 1, 1)), 10_000)
    out = n.step(ev.Receive("n3", RequestVote(2, "n3", "n3:1", 1, 1)), 10_000)
    assert not sent(out, RequestVoteResponse)[0].message.granted


def test_5_2_candidate_wins_with_a_majority_and_appends_a_noop():
    n = elect(node())
    assert n.log.entry(n.log.last_index).type is EntryType.NOOP


def test_5_3_follower_rejects_when_previous_entry_is_missing_and_reports_last_index():
    n = node()
    out = n.step(ev.Receive("n2", AppendEntries(2, "n2", "n2:1", 5, 1, (), 0)), 10)
    resp = sent(out, AppendEntriesResponse)[0].message
    assert not resp.success and resp.last_log_index == 1
    assert any(e.message == "failed to get previous log" for e in of(out, fx.Log))


def test_5_3_conflicting_suffix_is_truncated_and_replaced():
    n = node(entries=(Entry(2, 1), Entry(3, 1)))
    out = n.step(ev.Receive("n2", AppendEntries(2, "n2", "n2:1", 1, 1, (Entry(2, 2),), 0)), 10)
    assert of(out, fx.TruncateLog)[0].from_index == 2
    assert n.log.last_index == 2 and n.log.term_at(2) == 2


def test_5_3_leader_backs_off_next_index_using_the_followers_last_index():
    n = elect(node(entries=tuple(Entry(i, 1) for i in range(2, 11))))
    out = n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, False, 3, n.log.last_index - 1)))
    assert n.progress["n2"].next_index == 4
    resend = sent(out, AppendEntries)[0].message
    assert resend.prev_log_index == 3


def test_5_3_first_success_switches_to_pipelining():
    n = elect(node())
    last = n.log.last_index
    out = n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)))
    assert any(e.message == "pipelining replication" for e in of(out, fx.Log))
    assert n.progress["n2"].state.value == "pipeline"


def test_5_4_1_vote_denied_to_a_less_up_to_date_candidate():
    n = node(entries=(Entry(2, 3),), term=3)
    out = n.step(ev.Receive("n2", RequestVote(4, "n2", "n2:1", 5, 2)), 10_000)
    assert not sent(out, RequestVoteResponse)[0].message.granted


def test_5_4_2_leader_does_not_commit_an_old_term_entry_by_counting():
    n = elect(node(entries=(Entry(2, 1),)))
    # n2 acknowledges the old entry 2 only: a majority holds it but it is from term 1
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, 2, 1, match_index=2)))
    assert n.commit_index == 0
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, 2, match_index=last)))
    assert n.commit_index == last


def test_6_membership_change_waits_for_the_previous_one():
    n = elect(node())
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)))
    out1 = n.step(ev.ChangeMembership(1, ConfigCommand.ADD_NONVOTER, "n4", "n4:1"))
    out2 = n.step(ev.ChangeMembership(2, ConfigCommand.ADD_NONVOTER, "n5", "n5:1"))
    assert of(out1, fx.Proposed) and not of(out2, fx.Proposed)
    assert n.configuration.has("n4") and not n.configuration.has("n5")


def test_6_nonvoter_does_not_start_elections():
    config = Configuration((Server("n1", "n1:1"), Server("n2", "n2:1", suffrage=__import__(
        "raftkv.raft.configuration", fromlist=["Suffrage"]).Suffrage.NONVOTER)))
    n = RaftNode("n2", "n2:1", CFG, PersistentState(1, None, 0, None,
                                                     (Entry(1, 1, EntryType.CONFIGURATION, config.encode()),)))
    n.start()
    out = n.step(ev.Tick(10_000), 10_000)
    assert n.role == "Follower"
    assert not sent(out, RequestVote)


def test_7_install_snapshot_discards_a_log_that_conflicts_at_the_snapshot_index():
    from raftkv.raft.messages import InstallSnapshot, SnapshotMeta
    n = node(entries=(Entry(2, 1), Entry(3, 1), Entry(4, 1)))
    meta = SnapshotMeta(3, 2, THREE, 1)
    out = n.step(ev.Receive("n2", InstallSnapshot(2, "n2", "n2:1", meta, {"k": "v"})), 10)
    assert of(out, fx.RestoreSnapshot)
    assert n.log.last_index == 3 and len(n.log) == 0


def test_7_install_snapshot_keeps_a_matching_suffix():
    from raftkv.raft.messages import InstallSnapshot, SnapshotMeta
    n = node(entries=(Entry(2, 1), Entry(3, 2), Entry(4, 2)))
    meta = SnapshotMeta(3, 2, THREE, 1)
    n.step(ev.Receive("n2", InstallSnapshot(2, "n2", "n2:1", meta, {})), 10)
    assert n.log.last_index == 4 and n.log.base_index == 3


def test_read_index_waits_for_a_heartbeat_quorum():
    n = elect(node())
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)))
    assert n.committed_in_term()
    out = n.step(ev.ReadIndex(7))
    assert not of(out, fx.ReadReady)
    beat = [s for s in sent(out, AppendEntries) if s.message.heartbeat][0].message
    out = n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, 0, heartbeat=True,
                                                        read_seq=beat.read_seq)))
    assert of(out, fx.ReadReady)[0].request_id == 7


def test_user_restore_becomes_a_snapshot_past_the_log_and_followers_get_it_by_install():
    from raftkv.raft.messages import InstallSnapshot, InstallSnapshotResponse
    n = elect(node(entries=(Entry(2, 1), Entry(3, 1))))
    last = n.log.last_index
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last, last - 1, match_index=last)))
    assert n.committed_in_term()
    out = n.step(ev.RestoreUserSnapshot(9, "backup-handle"))
    restore = of(out, fx.RestoreSnapshot)[0]
    assert restore.data == "backup-handle" and restore.meta.index == last + 1
    assert restore.meta.term == n.current_term and restore.meta.configuration == THREE
    kinds = [type(e) for e in out if not isinstance(e, fx.Log)]
    assert kinds.index(fx.RestoreSnapshot) < kinds.index(fx.TruncateLog) < kinds.index(fx.AppendToLog)
    assert n.snapshot.index == n.commit_index == n.last_applied == last + 1
    noop = of(out, fx.AppendToLog)[0].entries[0]
    assert noop.index == last + 2 and noop.type is EntryType.NOOP
    assert of(out, fx.Proposed)[0] == fx.Proposed(9, last + 2, n.current_term)
    installs = sent(out, InstallSnapshot)
    assert {s.to for s in installs} == {"n2", "n3"} and installs[0].message.meta.index == last + 1
    # the request completes once a quorum holds the restored state and the no-op
    n.step(ev.Receive("n2", InstallSnapshotResponse(n.current_term, True, last + 1)))
    assert n.commit_index == last + 1
    n.step(ev.Receive("n2", AppendEntriesResponse(n.current_term, True, last + 1, last + 2,
                                                  match_index=last + 2)))
    assert n.commit_index == last + 2


def test_user_restore_is_refused_by_a_follower_and_before_the_first_commit():
    follower = node()
    assert of(follower.step(ev.RestoreUserSnapshot(1, None)), fx.Rejected)[0].error.startswith(
        "node is not the leader")
    leader = elect(node())
    out = leader.step(ev.RestoreUserSnapshot(2, None))
    assert of(out, fx.Rejected) and not of(out, fx.RestoreSnapshot)


def test_log_limit_takes_a_snapshot_before_the_interval_and_only_once():
    config_entry = Entry(1, 1, EntryType.CONFIGURATION, THREE.encode())
    cfg = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50,
                     snapshot_threshold=5, snapshot_interval=1_000_000, snapshot_log_limit=20)
    entries = tuple(Entry(i, 1) for i in range(2, 40))
    n = RaftNode("n1", "n1:1", cfg, PersistentState(1, None, 15, None, (config_entry, *entries)),
                 random.Random(1))
    n.start()
    assert not of(n.step(ev.Tick(10), 10), fx.TakeSnapshot)  # 15 applied: under the limit
    n.step(ev.Receive("n2", AppendEntries(1, "n2", "n2:1", 39, 1, (), 30)), 20)
    asked = of(n.step(ev.Tick(30), 30), fx.TakeSnapshot)
    assert [e.meta.index for e in asked] == [30]
    # while that snapshot is being written, ticks do not ask again
    assert not of(n.step(ev.Tick(40), 40), fx.TakeSnapshot)


def test_large_entries_take_a_snapshot_by_bytes_and_keep_fewer_trailing_entries():
    config_entry = Entry(1, 1, EntryType.CONFIGURATION, THREE.encode())
    cfg = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50,
                     snapshot_threshold=1000, snapshot_interval=1_000_000, trailing_logs=100,
                     snapshot_log_limit=1000, snapshot_log_bytes=10_000)
    entries = tuple(Entry(i, 1, EntryType.COMMAND, b"x" * 1000) for i in range(2, 40))
    n = RaftNode("n1", "n1:1", cfg, PersistentState(1, None, 5, None, (config_entry, *entries)),
                 random.Random(1))
    n.start()
    assert not of(n.step(ev.Tick(10), 10), fx.TakeSnapshot)  # 4,000 bytes applied
    n.step(ev.Receive("n2", AppendEntries(1, "n2", "n2:1", 39, 1, (), 20)), 20)
    asked = of(n.step(ev.Tick(30), 30), fx.TakeSnapshot)  # 19,000 bytes applied
    assert [e.meta.index for e in asked] == [20]
    out = n.step(ev.SnapshotTaken(asked[0].meta), 40)
    # entries 21..39 (19,000 bytes) are over the budget already: none before them is kept,
    # although TrailingLogs (100) would keep them all
    assert [e.through_index for e in of(out, fx.CompactLog)] == [20]
    assert n.log.first_index == 21


def test_small_entries_keep_trailing_logs_after_a_snapshot():
    config_entry = Entry(1, 1, EntryType.CONFIGURATION, THREE.encode())
    cfg = RaftConfig(heartbeat_timeout=100, election_timeout=100, leader_lease_timeout=50,
                     snapshot_interval=1_000_000, trailing_logs=10, snapshot_log_bytes=10_000)
    entries = tuple(Entry(i, 1, EntryType.COMMAND, b"x" * 100) for i in range(2, 40))
    n = RaftNode("n1", "n1:1", cfg, PersistentState(1, None, 30, None, (config_entry, *entries)),
                 random.Random(1))
    n.start()
    meta = of(n.step(ev.RequestSnapshot(1), 10), fx.TakeSnapshot)[0].meta
    assert meta.index == 30
    n.step(ev.SnapshotTaken(meta), 20)
    assert n.log.first_index == 39 - 10 + 1  # TrailingLogs entries kept
