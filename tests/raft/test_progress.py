"""The leader's per-follower progress: which rejections count, and how far it backs off
(the core's rule, rules.follower_progress, carried out by Progress.back_off)."""

from __future__ import annotations

from raftkv.raft.progress import Progress, ProgressState
from raftkv.raft.rules import ProgressRequest, follower_progress


def _probing(next_index: int, match_index: int = 0) -> Progress:
    pr = Progress(next_index, match_index)
    pr.sent(next_index - 1, now=0)
    return pr


def _back_off(pr: Progress, rejected: int, last_index: int) -> None:
    decision = follower_progress(ProgressRequest(False, pr.match_index, pr.next_index, rejected, 0, last_index))
    pr.match_index = decision.match_index
    pr.back_off(decision.next_index)


def test_a_probe_backs_off_to_just_past_the_followers_log():
    pr = _probing(next_index=11)                 # sent entries after 10
    assert pr.answers_current_request(10)
    _back_off(pr, rejected=10, last_index=3)       # "my log ends at 3"
    assert pr.next_index == 4 and pr.state is ProgressState.PROBE and not pr.probe_sent


def test_a_follower_with_a_longer_conflicting_log_backs_off_one_step():
    pr = _probing(next_index=11)
    _back_off(pr, rejected=10, last_index=15)      # it has 10, of another term
    assert pr.next_index == 10


def test_never_below_what_the_follower_matched():
    pr = Progress(next_index=21, match_index=8, state=ProgressState.PIPELINE)
    _back_off(pr, rejected=20, last_index=2)
    assert pr.next_index == 9 and pr.state is ProgressState.PROBE


def test_stale_rejections_change_nothing():
    pr = _probing(next_index=11, match_index=5)
    assert not pr.answers_current_request(4)     # older than the match point
    assert not pr.answers_current_request(7)     # not the probe in flight
    pipeline = Progress(next_index=21, match_index=8, state=ProgressState.PIPELINE)
    assert pipeline.answers_current_request(12)  # any batch in flight may be refused
    assert not pipeline.answers_current_request(7)


def test_the_first_index_is_the_floor():
    pr = _probing(next_index=1)
    _back_off(pr, rejected=0, last_index=0)
    assert pr.next_index == 1


def test_an_acknowledgement_moves_match_and_next_but_never_back():
    pr = Progress(next_index=21, match_index=8, state=ProgressState.PIPELINE)
    ack = follower_progress(ProgressRequest(True, 8, 21, 12, 15, 15))
    assert (ack.match_index, ack.next_index) == (15, 21)      # 16..20 are still on their way
    late = follower_progress(ProgressRequest(True, 15, 21, 8, 12, 12))
    assert (late.match_index, late.next_index) == (15, 21)    # an older answer, overtaken
    assert pr.acknowledge(ack.match_index, ack.next_index, now=0) and pr.match_index == 15
