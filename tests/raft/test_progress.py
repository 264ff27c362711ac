"""The leader's per-follower progress: which rejections count, and how far it backs off."""

from __future__ import annotations

from raftkv.raft.progress import Progress, ProgressState


def _probing(next_index: int, match_index: int = 0) -> Progress:
    pr = Progress(next_index, match_index)
    pr.sent(next_index - 1, now=0)
    return pr


def test_a_probe_backs_off_to_just_past_the_followers_log():
    pr = _probing(next_index=11)                 # sent entries after 10
    assert pr.answers_current_request(10)
    pr.back_off(rejected=10, last_index=3)       # "my log ends at 3"
    assert pr.next_index == 4 and pr.state is ProgressState.PROBE and not pr.probe_sent


def test_a_follower_with_a_longer_conflicting_log_backs_off_one_step():
    pr = _probing(next_index=11)
    pr.back_off(rejected=10, last_index=15)      # it has 10, of another term
    assert pr.next_index == 10


def test_never_below_what_the_follower_matched():
    pr = Progress(next_index=21, match_index=8, state=ProgressState.PIPELINE)
    pr.back_off(rejected=20, last_index=2)
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
    pr.back_off(rejected=0, last_index=0)
    assert pr.next_index == 1
