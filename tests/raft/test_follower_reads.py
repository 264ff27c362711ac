"""Reads on followers: the follower asks the leader for the read index
(ReadIndexRequest, one per batch), the leader confirms it as it confirms its
own reads (a heartbeat round, or at once under its read lease), and the
follower serves the read once it has committed that far."""

from __future__ import annotations

from dataclasses import replace

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.messages import ReadIndexRequest, ReadIndexResponse
from raftkv.sim.cluster import SIM_CONFIG, SimCluster
from raftkv.sim.invariants import InvariantChecker
from raftkv.sim.state_machine import encode_command

IDS = ["n1", "n2", "n3"]


def _cluster(config=SIM_CONFIG) -> SimCluster:
    c = SimCluster(3, IDS, config=config, observer=InvariantChecker())
    for i in IDS:
        c.start(i)
    c.bootstrap(IDS)
    c.run_until(3000, stop=lambda: c.leader() is not None and c.leader().raft.committed_in_term())
    return c


def _answers(c: SimCluster, node_id: str) -> list:
    seen: list = []
    c.on_effects.append(lambda node, effects: seen.extend(
        e for e in effects if node.id == node_id and type(e) in (fx.ReadReady, fx.Rejected)))
    return seen


def test_a_follower_serves_a_read_after_asking_the_leader():
    c = _cluster()
    leader = c.leader()
    follower = next(n for n in c.live() if n is not leader)
    c.step(leader.id, ev.Propose(1, encode_command("x", "1")))
    written = leader.raft.log.last_index
    c.run_until(c.now + 100, stop=lambda: leader.raft.commit_index >= written)   # acknowledged to the client
    answers = _answers(c, follower.id)
    sent: list = []
    c.on_message = lambda mid, src, dst, msg, arrives, fate: sent.append(type(msg)) if fate == "sent" else None
    effects = c.step(follower.id, ev.ReadIndex(7))
    assert not [e for e in effects if type(e) in (fx.ReadReady, fx.Rejected)]   # it asks first
    assert ReadIndexRequest in sent
    c.run_until(c.now + 200, stop=lambda: bool(answers))
    assert answers and type(answers[0]) is fx.ReadReady and answers[0].request_id == 7
    # the answer itself told the follower the index is committed: no wait for the next heartbeat
    assert answers[0].index >= written
    # served where the write is applied: the leader confirmed a read index that covers it
    assert follower.applied_index >= answers[0].index and follower.state.get("x") == "1"
    assert ReadIndexResponse in sent


def test_a_lease_read_on_a_follower_needs_no_heartbeat_round():
    c = _cluster()
    leader = c.leader()
    follower = next(n for n in c.live() if n is not leader)
    c.step(leader.id, ev.Propose(1, encode_command("x", "1")))
    c.run_until(c.now + 30, stop=lambda: leader.raft.leader.lease.valid(leader.raft.now))
    assert leader.raft.leader.lease.valid(leader.raft.now)
    heartbeats_before = leader.raft.leader.read_only.started_seq
    answers = _answers(c, follower.id)
    c.step(follower.id, ev.ReadIndex(8, lease=True))
    c.run_until(c.now + 50, stop=lambda: bool(answers))
    assert answers and type(answers[0]) is fx.ReadReady
    assert leader.raft.leader.read_only.started_seq == heartbeats_before   # no round was needed


def test_a_follower_whose_leader_changes_refuses_the_reads_it_asked_for():
    c = _cluster()
    leader = c.leader()
    follower = next(n for n in c.live() if n is not leader)
    answers = _answers(c, follower.id)
    c.crash(leader.id)                                  # the request will never be answered
    c.step(follower.id, ev.ReadIndex(9))
    c.run_until(c.now + 3000, stop=lambda: bool(answers))
    assert answers and type(answers[0]) is fx.Rejected and answers[0].request_id == 9


def test_without_follower_reads_a_follower_refuses():
    c = _cluster(replace(SIM_CONFIG, follower_reads=False))
    follower = next(n for n in c.live() if n is not c.leader())
    effects = c.step(follower.id, ev.ReadIndex(10))
    assert [e.request_id for e in effects if type(e) is fx.Rejected] == [10]
