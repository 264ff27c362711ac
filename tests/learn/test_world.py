"""The learning page's simulator: frames, rewinding by replay, forking, dropping a message."""

from __future__ import annotations

import json

import pytest

from raftkv.learn.lessons import _leaders
from raftkv.learn.world import ActionError, Spec, World


def _first_leader(frames) -> tuple[str, int]:
    return _leaders(frames)[0]


def _strip(frames):
    return json.dumps(frames, sort_keys=True)


def test_frames_are_the_same_for_the_same_seed_and_show_an_election():
    a, b = World(Spec(seed=4)), World(Spec(seed=4))
    assert _strip(a.frames(0, 300)) == _strip(b.frames(0, 300))
    frames = a.frames(0, 300)
    types = {m["type"] for f in frames for m in f["flight"]}
    assert {"RequestVote", "RequestVoteResponse", "AppendEntries", "AppendEntriesResponse"} <= types
    assert _leaders(frames)
    for frame in frames:  # every node is drawn in every frame
        assert [n["id"] for n in frame["nodes"]] == ["n1", "n2", "n3"]


def test_a_message_in_flight_moves_from_sender_to_receiver():
    world = World(Spec(seed=4))
    frames = world.frames(0, 200)
    sent = {m["id"]: m for f in frames for m in f["flight"]}
    delivered = [f for f in frames if f["delivered"] is not None]
    assert delivered
    for frame in delivered:
        msg = sent[frame["delivered"]]
        assert frame["node"] == msg["to"] and frame["t"] == msg["arrive"] and msg["sent"] <= msg["arrive"]
        assert frame["event"]["message"]["type"] == msg["type"]


def test_dropping_the_votes_that_would_elect_a_candidate_changes_who_wins():
    world = World(Spec(seed=1))
    frames = world.frames(0, 300)
    winner = _first_leader(frames)
    # the first frame where a granted vote heads to the winner in its winning term
    at, votes = next((f["i"], [m["id"] for m in f["flight"] if m["type"] == "RequestVoteResponse"
                               and m["to"] == winner[0] and m["granted"] and not m["pre_vote"]])
                     for f in frames
                     if any(m["type"] == "RequestVoteResponse" and m["to"] == winner[0] and m["granted"]
                            and not m["pre_vote"] for m in f["flight"]))
    # drop every granted vote to it, each at the frame it is in flight
    dropped = 0
    while True:
        frames = world.frames(0, at + 200)
        pending = [(f["i"], m["id"]) for f in frames[at:] for m in f["flight"]
                   if m["type"] == "RequestVoteResponse" and m["to"] == winner[0] and m["granted"]
                   and m["term"] == winner[1] and not m["pre_vote"]]
        if not pending:
            break
        seen_at, message = pending[0]
        at = seen_at + 1   # right after the frame it is seen in flight
        world.act(at, "drop", message=message)
        dropped += 1
    assert dropped >= 1
    frames = world.frames(0, 2000)
    assert _first_leader(frames) != winner


def test_acting_in_the_past_forks_and_the_old_branch_stays():
    world = World(Spec(seed=2))
    old = world.frames(0, 400)
    leader = _first_leader(old)[0]
    forked = world.act(100, "crash", node=leader)
    assert forked and world.current == 1 and len(world.branches) == 2
    new = world.frames(0, 400)
    assert _strip(new[:100]) == _strip(old[:100])      # the past is kept
    assert new[100]["event"]["type"] == "Action" and new[100]["label"] == f"{leader} crashes"
    assert _strip(new[101:]) != _strip(old[101:])
    # back to the first branch, exactly as it was, and it goes on
    world.switch(0)
    assert _strip(world.frames(0, 400)) == _strip(old)
    assert len(world.frames(0, 600)) == 600
    # forking the fork: the second branch's actions before the fork point are kept
    world.switch(1)
    world.act(300, "restart", node=leader)
    assert world.branch.parent == 1 and [a.verb for a in world.branch.actions] == ["crash", "restart"]


def test_acting_at_the_end_carries_on_without_a_fork():
    world = World(Spec(seed=2))
    frames = world.frames(0, 200)
    assert world.act(len(frames), "write", node=_first_leader(frames)[0], key="x", value="1") is False
    assert len(world.branches) == 1
    frames = world.frames(0, 400)
    client = frames[-1]["clients"][-1]
    assert client["kind"] == "write" and client["status"] == "ok" and client["index"] >= 2


def test_a_read_is_served_after_a_heartbeat_round():
    world = World(Spec(seed=2))
    frames = world.frames(0, 200)
    leader = _first_leader(frames)[0]
    world.act(200, "read", node=leader, key="x")
    frames = world.frames(0, 400)
    assert any(m["type"] == "AppendEntries" and m["heartbeat"] and m["read_seq"] > 0
               for f in frames[200:] for m in f["flight"])
    assert frames[-1]["clients"][-1]["status"] == "ok"


def test_impossible_actions_say_why_and_change_nothing():
    world = World(Spec(seed=2))
    world.frames(0, 50)
    for kwargs, text in [({"verb": "crash", "node": "n9"}, "no server"), ({"verb": "drop", "message": 10 ** 6},
                         "not in flight"), ({"verb": "restart", "node": "n1"}, "running"),
                         ({"verb": "fly", "node": "n1"}, "unknown action")]:
        with pytest.raises(ActionError, match=text):
            world.act(20, **kwargs)
    assert len(world.branches) == 1 and not world.branch.actions
