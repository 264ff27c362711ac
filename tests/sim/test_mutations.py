"""Break the core on purpose; the simulator must notice each breakage."""

import pytest

from raftkv.raft.node import RaftNode
from raftkv.sim.fuzz import run_once
from raftkv.sim.invariants import Violation
from raftkv.sim.scenarios import run_scenario


def test_granting_votes_without_the_up_to_date_check_is_caught(monkeypatch):
    monkeypatch.setattr(RaftNode, "_log_is_up_to_date", lambda self, term, index: True)
    caught = [s for s in range(50) if run_once(s).violation is not None]
    assert caught, "no randomized run noticed votes granted to stale candidates"


def test_committing_an_old_term_entry_by_counting_is_caught(monkeypatch):
    run_scenario("figure-8")  # the correct core passes
    monkeypatch.setattr(RaftNode, "_can_commit_by_counting", lambda self, index: True)
    with pytest.raises(Violation):
        run_scenario("figure-8")


def test_keeping_a_conflicting_suffix_on_snapshot_install_is_caught(monkeypatch):
    run_scenario("snapshot-conflicting-suffix")
    monkeypatch.setattr(RaftNode, "_keep_log_suffix", lambda self, meta: meta.index <= self.log.last_index)
    with pytest.raises(Violation):
        run_scenario("snapshot-conflicting-suffix")
