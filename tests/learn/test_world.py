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
    forked, at = world.act(100, "crash", node=leader)
    assert forked and world.current == 1 and len(world.branches) == 2
    assert at in (100, 101)    # 101 if frame 99 is drawn halfway through a step
    new = world.frames(0, 400)
    assert _strip(new[:at]) == _strip(old[:at])      # the past is kept
    assert new[at]["event"]["type"] == "Action" and new[at]["label"] == f"{leader} crashes"
    assert _strip(new[at + 1:]) != _strip(old[at + 1:])
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
    assert world.act(len(frames), "write", node=_first_leader(frames)[0], key="x", value="1") == (False, len(frames))
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


def test_a_write_is_drawn_in_memory_first_then_fsynced():
    """The leader's AppendEntries leave before its own entry is on disk; a
    follower answers only once its copy is: two frames for each append."""
    world = World(Spec(seed=2))
    frames = world.frames(0, 200)
    leader = _first_leader(frames)[0]
    _, at = world.act(len(frames), "write", node=leader, key="x", value="1")
    frames = world.frames(0, at + 400)
    mids = [f for f in frames[at:] if f.get("mid_step")]
    assert mids, "an append is first drawn in memory"
    first = mids[0]
    me = next(n for n in first["nodes"] if n["id"] == first["node"])
    assert first["node"] == leader and me["durable"] < me["last"]
    assert any(m["type"] == "AppendEntries" for m in first["flight"] if m["from"] == leader)
    fsync = frames[first["i"] + 1]
    assert fsync["event"] == {"type": "Fsync", "through": me["last"]} and fsync["label"] == f"{leader} fsyncs its log"
    after = next(n for n in fsync["nodes"] if n["id"] == leader)
    assert after["durable"] == after["last"]
    assert "thesis §10.2.1" in [s["paper"] for s in fsync["narration"]]
    # a follower's copy: in memory, no answer yet; on disk, then the answer leaves
    follower = next(f for f in mids[1:] if f["node"] != leader)
    f_view = next(n for n in follower["nodes"] if n["id"] == follower["node"])
    assert f_view["durable"] < f_view["last"]
    assert not [m for m in follower["flight"] if m["from"] == follower["node"] and m["type"] == "AppendEntriesResponse"
                and m["id"] in follower["sent"]]
    answered = frames[follower["i"] + 1]
    assert answered["event"]["type"] == "Fsync"
    assert [m for m in answered["flight"] if m["id"] in answered["sent"] and m["type"] == "AppendEntriesResponse"]


def test_acting_right_after_an_in_memory_frame_waits_for_the_fsync():
    world = World(Spec(seed=2))
    frames = world.frames(0, 200)
    leader = _first_leader(frames)[0]
    _, at = world.act(len(frames), "write", node=leader, key="x", value="1")
    mid = next(f for f in world.frames(0, at + 200)[at:] if f.get("mid_step"))
    forked, taken = world.act(mid["i"] + 1, "read", node=leader, key="x")
    assert forked and taken == mid["i"] + 2     # after the fsync frame, never between the two
    before, action = world.frames(taken - 1, 2)
    assert before["event"]["type"] == "Fsync" and action["event"]["type"] == "ReadIndex"


def test_a_lease_read_is_served_at_once_and_narrated():
    world = World(Spec(seed=2))
    frames = world.frames(0, 200)
    leader = _first_leader(frames)[0]
    _, at = world.act(len(frames), "write", node=leader, key="x", value="1")
    world.run_until(lambda c: c.nodes[leader].raft.commit_index >= c.nodes[leader].raft.log.last_index
                    and c.nodes[leader].raft.leader.lease.valid(c.nodes[leader].raft.now))
    count = len(world.branch.frames)
    _, at = world.act(count, "read", node=leader, key="x", value="lease")
    frame = world.frames(at, 1)[0]
    assert frame["event"] == {"type": "ReadIndex", "request": frame["event"]["request"], "lease": True}
    assert frame["clients"][-1]["status"] == "ok" and frame["clients"][-1]["value"] == "1"
    assert frame["clients"][-1]["lease"] is True
    assert any(s["paper"].startswith("LeaseGuard") for s in frame["narration"]), frame["narration"]
    lines = [s["text"] for f in world.frames(0, count) for s in f["narration"]]
    assert any("holds a read lease" in line for line in lines)
