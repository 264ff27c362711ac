"""The classic bugs, planted in the reference solutions: each is the
reference's source with one change."""

from raftkv.lab.exercises import BY_NAME


def _plant(exercise: str, old: str, new: str) -> tuple[str, str]:
    source = BY_NAME[exercise].solution()
    assert old in source, (exercise, old)
    return exercise, source.replace(old, new)


def _plant_all(exercise: str, changes) -> tuple[str, str]:
    source = BY_NAME[exercise].solution()
    for old, new in changes:
        assert old in source, (exercise, old)
        source = source.replace(old, new)
    return exercise, source


# name -> (exercise, source, the invariants its failure may name)
PLANTED = {
    "vote without the up-to-date check": (*_plant_all("vote", (
        ("    if req.candidate_last_log_term != req.last_log_term:", "    if False:"),
        ("    elif req.candidate_last_log_index < req.last_log_index:", "    elif False:"))),
        ("Leader Completeness", "State Machine Safety", "Committed entries never truncated")),
    "two votes in one term": (*_plant(
        "vote", "return VoteDecision(req.voted_for == req.candidate, reason=ALREADY_VOTED)",
        "pass"), ("Election Safety",)),
    "restarting the timer on a refused vote": (*_plant(
        "vote", "        return VoteDecision(False, reason=LOG_SHORTER)",
        "        return VoteDecision(False, restart_timer=True, reason=LOG_SHORTER)"),
        ("Election timer restarted without cause",)),
    "committing an old term's entry by counting replicas": (*_plant(
        "commit", "if n > req.commit_index and req.log.term_at(n) == req.current_term:",
        "if n > req.commit_index:"), ("Leader Completeness", "State Machine Safety",
                                      "Committed entries never truncated")),
    "not truncating a conflicting suffix": (*_plant(
        "append", "            truncate_from = entry.index\n            new = req.entries[i:]\n            break",
        "            continue"), ("Log Matching", "State Machine Safety", "Leader Completeness",
                                 "The core could not carry out your decision")),
    "truncating when the entries match": (*_plant(
        "append", "        if log.term_at(entry.index) != entry.term:",
        "        if True:"), ("Truncated entries that matched",)),
    "accepting AppendEntries from a stale term": (*_plant(
        "append", "    if req.term < req.current_term:\n        return AppendDecision(accept_leader=False",
        "    if False:\n        return AppendDecision(accept_leader=False"), ("Followed a stale leader",)),
    "an off-by-one in the previous-log check": (*_plant(
        "append", "if log.term_at(req.prev_log_index) != req.prev_log_term:",
        "if req.prev_log_index > 0 and log.term_at(req.prev_log_index - 1) != req.prev_log_term:"),
        ("Log Matching", "State Machine Safety", "Leader Completeness", "Liveness", "Scenario",
         "Committed past the last new entry", "The core could not carry out your decision")),
    "committing past the last new entry": (*_plant(
        "append", "commit = max(req.commit_index, min(req.leader_commit, last_new))",
        "commit = max(req.commit_index, min(req.leader_commit, log.last_index + len(new)))"),
        ("Committed past the last new entry",)),
    "replying before persisting the vote": (*_plant(
        "persist", "hard_state = req.term_changed or req.vote_changed", "hard_state = req.term_changed"),
        ("Persist before send", "Election Safety")),
    "replying before persisting the term": (*_plant(
        "persist", "hard_state = req.term_changed or req.vote_changed", "hard_state = req.vote_changed"),
        ("Persist before send", "Election Safety")),
    "acknowledging entries before persisting them": (*_plant(
        "persist", "log=req.log_changed)", 'log=req.log_changed and req.role != "Follower")'),
        ("Persist before send", "Leader Completeness", "State Machine Safety")),
    "setting match_index from next_index optimistically": (*_plant(
        "backtrack", "return ProgressDecision(req.acknowledged, max(req.next_index, req.acknowledged + 1))",
        "return ProgressDecision(req.next_index - 1, req.next_index)"),
        ("Match index beyond what the follower acknowledged",)),
    "backing off too little (retrying the refused index)": (*_plant(
        "backtrack", "back = min(req.prev_log_index, req.follower_last_index + 1)",
        "back = min(req.prev_log_index, req.follower_last_index) + 1"), ("Scenario", "Liveness")),
    "backing off to the follower's end past the refused index": (*_plant(
        "backtrack", "back = min(req.prev_log_index, req.follower_last_index + 1)",
        "back = req.follower_last_index + 1"), ("Scenario", "Liveness")),
    "restarting the timer on a pre-vote": (*_plant(
        "prevote", "return PreVoteDecision(True)", "return PreVoteDecision(True, restart_timer=True)"),
        ("Election timer restarted without cause",)),
    "a pre-vote that changes the term": (*_plant(
        "prevote", "return PreVoteDecision(True)", "return PreVoteDecision(True, enter_term=True)"),
        ("Pre-vote changed the term",)),
    "a pre-vote granted while a leader is heard": (*_plant(
        "prevote", "    if req.leader_heard:\n", "    if False:\n"), ("Pre-vote granted while a leader is heard",)),
    "a pre-vote without the up-to-date check": (*_plant_all("prevote", (
        ("    if req.candidate_last_log_term != req.last_log_term:", "    if False:"),
        ("    elif req.candidate_last_log_index < req.last_log_index:", "    elif False:"))),
        ("Pre-vote granted to a stale log",)),
    "installing a stale snapshot behind the commit index": (*_plant(
        "snapshot", "    if req.snapshot_index <= req.commit_index:\n", "    if False:\n"),
        ("Monotonic indexes", "Committed entries never truncated")),
    "accepting InstallSnapshot from a stale term": (*_plant(
        "snapshot", "    if req.term < req.current_term:\n", "    if False:\n"), ("Followed a stale leader",)),
    "keeping a log suffix that conflicts with the snapshot": (*_plant(
        "snapshot", "keep = req.snapshot_index <= req.log.last_index and ours == req.snapshot_term",
        "keep = req.snapshot_index <= req.log.last_index"),
        ("Kept entries that conflict with the snapshot",)),
    "a read served at its arrival's commit index before this term committed": (*_plant(
        "readindex", "    if req.arrival_commit_index >= req.first_index_of_term:\n", "    if True:\n"),
        ("Linearizable read",)),
    "a read answered without a majority's heartbeat echo": (*_plant(
        "readindex", "    if not req.quorum_confirmed or req.commit_index < req.first_index_of_term:",
        "    if req.commit_index < req.first_index_of_term:"), ("Linearizable read",)),
}
