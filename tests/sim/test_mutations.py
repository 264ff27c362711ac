"""Break the core on purpose; the simulator must notice each breakage."""

from dataclasses import replace

import pytest

from raftkv.node.executor import EffectExecutor
from raftkv.raft import effects as fx
from raftkv.raft import rules
from raftkv.raft.node import RaftNode
from raftkv.raft.quorum import quorum_value
from raftkv.sim.fuzz import ClientModel, run_once
from raftkv.sim.invariants import Violation
from raftkv.sim.scenarios import run_scenario


def test_granting_votes_without_the_up_to_date_check_is_caught(monkeypatch):
    def no_up_to_date_check(req: rules.VoteRequest) -> rules.VoteDecision:
        return rules.grant_vote(replace(req, candidate_last_log_term=req.last_log_term,
                                        candidate_last_log_index=req.last_log_index))
    def no_up_to_date_pre_vote(req: rules.PreVoteRequest) -> rules.PreVoteDecision:
        return rules.grant_pre_vote(replace(req, candidate_last_log_term=req.last_log_term,
                                            candidate_last_log_index=req.last_log_index))
    # pre-votes ask the same question, and a core without the check skips it there too
    monkeypatch.setattr(RaftNode, "rules", replace(rules.DEFAULT_RULES, grant_vote=no_up_to_date_check,
                                                   grant_pre_vote=no_up_to_date_pre_vote))
    caught = [s for s in range(50) if run_once(s).violation is not None]
    assert caught, "no randomized run noticed votes granted to stale candidates"


def test_committing_an_old_term_entry_by_counting_is_caught(monkeypatch):
    run_scenario("figure-8")  # the correct core passes
    def by_counting(req: rules.CommitRequest) -> int:
        return max(req.commit_index, quorum_value(req.match_indexes))
    monkeypatch.setattr(RaftNode, "rules", replace(rules.DEFAULT_RULES, leader_commit_index=by_counting))
    with pytest.raises(Violation):
        run_scenario("figure-8")


def test_keeping_a_conflicting_suffix_on_snapshot_install_is_caught(monkeypatch):
    run_scenario("snapshot-conflicting-suffix")
    def keep_any_suffix(req: rules.SnapshotRequest) -> rules.SnapshotDecision:
        decision = rules.install_snapshot(req)
        return replace(decision, keep_log_suffix=req.snapshot_index <= req.log.last_index)
    monkeypatch.setattr(RaftNode, "rules", replace(rules.DEFAULT_RULES, install_snapshot=keep_any_suffix))
    with pytest.raises(Violation):
        run_scenario("snapshot-conflicting-suffix")


# The simulator runs the node's own EffectExecutor, so breaking the effect
# contract there must be noticed too.

def test_sending_before_persisting_is_caught(monkeypatch):
    run_scenario("first-election")
    persist, finish = EffectExecutor.persist, EffectExecutor.finish

    def send_then_persist(self, ready):
        finish(self, ready)
        persist(self, ready)
    monkeypatch.setattr(EffectExecutor, "persist", lambda self, ready: None)
    monkeypatch.setattr(EffectExecutor, "finish", send_then_persist)
    with pytest.raises(Violation, match="Persist before send"):
        run_scenario("first-election")


def test_every_message_leaving_early_is_caught(monkeypatch):
    """Only a leader's AppendEntries may leave while the leader's own write
    is in progress; votes and acknowledgements wait for the disk."""
    send = EffectExecutor._send

    def everything_early(self, ready, leader):
        ready.sent_early = True
        send(self, ready.effects)

    def nothing_left_to_send(self, effects, only_appends=False, skip_appends=False):
        if not skip_appends:
            send(self, effects, only_appends, skip_appends)
    monkeypatch.setattr(EffectExecutor, "send_early", everything_early)
    monkeypatch.setattr(EffectExecutor, "_send", nothing_left_to_send)
    with pytest.raises(Violation, match="Persist before send"):
        run_scenario("first-election")


def test_applying_before_persisting_is_caught(monkeypatch):
    run_scenario("follower-catch-up")
    send_early = EffectExecutor.send_early

    def apply_early(self, ready, leader):
        # applies committed entries while the same batch's writes are under way
        send_early(self, ready, leader)
        if not ready.persist:
            return
        for effect in ready.effects:
            if type(effect) is fx.Apply:
                self._apply(effect.entries)
        ready.effects = [e for e in ready.effects if type(e) is not fx.Apply]
    monkeypatch.setattr(EffectExecutor, "send_early", apply_early)
    with pytest.raises(Violation, match="Persist before apply"):
        run_scenario("follower-catch-up")


def test_answering_a_read_before_applying_is_caught(monkeypatch):
    """ReadReady follows the Apply it waits for; the clients see each outcome
    the moment the executor hands it over."""
    finish = EffectExecutor.finish
    outcomes = (fx.Proposed, fx.Rejected, fx.Completed, fx.ReadReady)

    def outcomes_first(self, ready):
        ready.effects = sorted(ready.effects, key=lambda e: type(e) not in outcomes)
        finish(self, ready)
    monkeypatch.setattr(EffectExecutor, "finish", outcomes_first)
    caught = [r.violation for r in map(run_once, range(30)) if r.violation is not None]
    assert caught and all(v.invariant == "Linearizable read" for v in caught), caught


def _switch_off_the_amnesia_guard(monkeypatch):
    monkeypatch.setattr(RaftNode, "_amnesia_reason", lambda self: None)
    monkeypatch.setattr(RaftNode, "_stale_voter", lambda self, peer_id, pr: False)


def test_a_wiped_voter_voting_is_caught_in_the_amnesia_scenario(monkeypatch):
    run_scenario("amnesia")  # the guarded core passes
    _switch_off_the_amnesia_guard(monkeypatch)
    with pytest.raises(Violation, match="Leader Completeness|Election Safety|State Machine Safety"):
        run_scenario("amnesia")


def test_a_wiped_voter_voting_is_caught_by_randomized_runs(monkeypatch):
    """The randomized schedule wipes disks; without the guard some run loses
    an acknowledged write or elects two leaders in a term."""
    _switch_off_the_amnesia_guard(monkeypatch)
    caught = [s for s in range(100) if run_once(s).violation is not None]
    assert caught, "no randomized run noticed a wiped voter voting"


def test_serving_a_strong_read_before_its_entry_is_applied_is_caught(monkeypatch):
    """A strong read goes through the log: it must see the state after its
    own entry (a write of nothing) is applied. Served the moment that entry
    is appended instead, it may miss writes acknowledged before it began;
    the checker must notice."""
    observe = ClientModel.observe

    def serve_on_append(self, node, effects):
        for effect in effects:
            read = self.waiting.get(getattr(effect, "request_id", None))
            if type(effect) is fx.Proposed and read is not None and read.level == "strong":
                del self.waiting[effect.request_id]
                read.index, read.term = effect.index, effect.term
                self._serve(node, read)
        observe(self, node, effects)
    assert run_once(3).violation is None
    monkeypatch.setattr(ClientModel, "observe", serve_on_append)
    result = run_once(3)
    assert result.violation is not None and result.violation.invariant == "Strong read", result.violation
