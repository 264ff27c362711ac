"""Scripted scenarios pass every invariant and print their golden traces."""

import pathlib

import pytest

from raftkv.sim.scenarios import SCENARIOS, run_scenario

GOLDEN = pathlib.Path(__file__).parent / "golden"

EXPECTED_LINES = {
    "first-election": ["heartbeat timeout reached, starting election", "election won", "pipelining replication"],
    "leader-crash": ["kill -9 the leader", "entering leader state"],
    "follower-catch-up": ["failed to get previous log", "appendEntries rejected, sending older logs"],
    "stale-leader-partition": ["failed to contact quorum of nodes, stepping down"],
    "nonvoter-join-and-promotion": ["command=AddNonvoter", "Promoting server", "command=AddVoter"],
    "snapshot-install": ["installing snapshot on", "Installed remote snapshot", "compacting logs"],
    "leadership-transfer": ["starting leadership transfer", "TimeoutNow", "election won"],
    "split-vote": ["Election timeout reached, restarting election"],
    "figure-8": ["election won"],
    "snapshot-conflicting-suffix": ["Installed remote snapshot"],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_trace_matches_golden(name, request):
    lines: list[str] = []
    run_scenario(name, out=lines.append)
    text = "\n".join(lines) + "\n"
    for expected in EXPECTED_LINES[name]:
        assert expected in text, f"{name} trace lacks {expected!r}"
    golden = GOLDEN / f"{name}.txt"
    if request.config.getoption("--rewrite") or not golden.exists():
        golden.write_text(text)
    assert text == golden.read_text(), f"trace of {name} changed; rerun with --rewrite if intended"


def test_scenario_is_deterministic():
    a, b = [], []
    run_scenario("leader-crash", out=a.append)
    run_scenario("leader-crash", out=b.append)
    assert a == b
