"""Lessons: they build, their stops go forward, Back/Next land on the same frames, and each
"try it" fails until the learner does it and passes once they have."""

from __future__ import annotations

import json

import pytest

from raftkv.learn.lessons import LESSONS, _leaders


@pytest.mark.parametrize("name", list(LESSONS))
def test_a_lesson_builds_with_ordered_stops_and_an_unsolved_try_it(name):
    lesson = LESSONS[name]
    world, stops = lesson.build()
    frames = [s["frame"] for s in stops]
    assert len(stops) >= 4 and frames == sorted(frames)
    assert all(0 <= f < len(world.branch.frames) for f in frames)
    assert stops[-1].get("try_it") and stops[-1]["text"] == lesson.try_it
    passed, message = lesson.check(world)
    assert not passed and message
    # the same lesson built again is the same lesson: Back and Next show the same frames
    again, stops_again = lesson.build()
    assert stops_again == stops
    for stop in stops:
        assert json.dumps(again.branch.frames[stop["frame"]], sort_keys=True) == \
            json.dumps(world.branch.frames[stop["frame"]], sort_keys=True)


def test_first_election_try_it_passes_when_the_winning_votes_are_dropped():
    lesson = LESSONS["first-election"]
    world, stops = lesson.build()
    winner = _leaders(world.branch.frames)[0]
    at = stops[1]["frame"]
    while True:
        frames = world.frames(0, at + 400)
        pending = [(f["i"], m["id"]) for f in frames[at:] for m in f["flight"]
                   if m["type"] == "RequestVoteResponse" and m["to"] == winner[0] and m["granted"]
                   and not m["pre_vote"] and m["term"] == winner[1]]
        if not pending:
            break
        seen, message = pending[0]
        at = seen + 1
        world.act(at, "drop", message=message)
    world.frames(0, len(world.branch.frames) + 1500)
    passed, message = lesson.check(world)
    assert passed, message


def test_replication_try_it_passes_with_a_follower_down():
    lesson = LESSONS["replication"]
    world, stops = lesson.build()
    end = len(world.branch.frames)
    leader = _leaders(world.branch.frames)[-1][0]
    follower = next(n for n in ("n1", "n2", "n3") if n != leader)
    world.act(end, "crash", node=follower)
    world.act(end + 1, "write", node=leader, key="y", value="2")
    world.frames(0, end + 200)
    assert lesson.check(world)[0]


def test_leader_crash_try_it_passes_once_the_old_leader_follows():
    lesson = LESSONS["leader-crash"]
    world, stops = lesson.build()
    old = next(a.node for a in world.branch.actions if a.verb == "crash")
    world.act(len(world.branch.frames), "restart", node=old)
    world.frames(0, len(world.branch.frames) + 300)
    assert lesson.check(world)[0]


def test_figure_8_narrates_the_refusal_to_commit_by_counting():
    world, stops = LESSONS["figure-8"].build()
    c = next(s for s in stops if s["title"].startswith("(c)"))
    sentences = world.branch.frames[c["frame"]]["narration"]
    assert any(s["paper"].startswith("Figure 8") and "does not commit" in s["text"] for s in sentences)
    # (d): n5 wins, and the term-2 entries are gone from every log
    leaders = _leaders(world.branch.frames)
    assert leaders[-1][0] == "n5" and leaders[-1][1] > 4
