"""``/readyz``'s decision (raftkv.node.views.readiness_view), from a core
status and what the runtime adds: the applied index and the age of the
leader's last contact."""

import dataclasses
import random

from raftkv.node.views import readiness_view
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.node import PersistentState, RaftConfig, RaftNode

THREE = Configuration(tuple(Server(i, f"{i}:1") for i in ("n1", "n2", "n3")))


def status(**changes):
    n = RaftNode("n2", "n2:1", RaftConfig(), PersistentState(), random.Random(1))
    n.start()
    st = dataclasses.replace(n.status(), configuration=THREE)
    return dataclasses.replace(st, **changes)


def ready(st, applied, age=10, upto=None, stopping=False):
    return readiness_view(st, applied=applied, contact_age=age, stale_after=1000, stopping=stopping, upto=upto)


def test_no_leader_is_not_ready():
    body = ready(status(), 0, age=None)
    assert (body["ready"], body["reason"], body["leader"]) == (False, "no leader", None)


def test_a_follower_is_ready_once_it_applied_its_leaders_commit_index():
    st = status(leader_id="n1", leader_address="n1:1", leader_commit=42)
    body = ready(st, 10)
    assert not body["ready"]
    assert body["reason"] == "applied 10 of 42 (leader n1's commit index at last contact)"
    assert (body["applied_index"], body["leader_commit_index"], body["last_contact"]) == (10, 42, 10)
    assert ready(st, 42) == {"ready": True, "state": "Follower", "leader": "n1", "applied_index": 42,
                             "leader_commit_index": 42, "last_contact": 10}


def test_upto_caps_the_index_to_reach():
    st = status(leader_id="n1", leader_address="n1:1", leader_commit=42)
    assert ready(st, 30, upto=30)["ready"]


def test_a_leader_heard_too_long_ago_does_not_count():
    st = status(leader_id="n1", leader_address="n1:1", leader_commit=42)
    body = ready(st, 42, age=1500)
    assert (body["ready"], body["reason"]) == (False, "no contact with leader n1 for 1500ms")


def test_a_leader_is_ready_once_its_term_has_a_commit_and_it_applied_it():
    st = status(role="Leader", leader_id="n2", leader_address="n2:1", term=3, leader_commit=42,
                committed_in_term=False)
    assert ready(st, 42, age=0)["reason"] == "leader n2 has not yet committed an entry of its term 3"
    st = dataclasses.replace(st, committed_in_term=True)
    assert ready(st, 41, age=0)["reason"] == "applied 41 of 42 (its own commit index)"
    assert ready(st, 42, age=0)["ready"]


def test_a_stopping_node_is_not_ready():
    st = status(leader_id="n1", leader_address="n1:1", leader_commit=1)
    assert ready(st, 1, stopping=True)["reason"] == "shutting down"
