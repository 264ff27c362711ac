"""Scripted scenarios pass every invariant and print the traces their files hold."""

import pytest

from raftkv.sim import datadriven
from raftkv.sim.cli import main as sim_main
from raftkv.sim.scenarios import TEACHING_ORDER, check_scenario, run_scenario, scenario_names, scenario_path

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
    "amnesia": ["rejecting pre-vote request since we have no configuration", "peer's storage was lost",
                "command=DemoteVoter", "re-admitting a voter whose storage was lost", "command=AddVoter"],
    "weak-read-partition": ["read x level=weak returned 1", "STALE", "documented limit of level weak",
                            "read x level=lease waits", "read x level=linearizable waits",
                            "read x level=linearizable refused", "read x level=linearizable returned 2"],
    "lease-clock-drift": ["read x level=lease returned 1", "read x level=lease waits", "read x level=lease refused",
                          "read x level=lease returned 3", "documented limit of level lease",
                          "read x level=linearizable waits"],
}


def test_every_scenario_ships_in_teaching_order():
    assert scenario_names() == list(TEACHING_ORDER)


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_trace_matches_its_file(name, rewrite):
    text = check_scenario(scenario_path(name), rewrite=rewrite)
    for expected in EXPECTED_LINES[name]:
        assert expected in text, f"{name} trace lacks {expected!r}"


def test_scenario_is_deterministic():
    a, b = [], []
    run_scenario("leader-crash", out=a.append)
    run_scenario("leader-crash", out=b.append)
    assert a == b


def test_cli_trace_prints_the_expected_blocks_in_order(capsys):
    assert sim_main(["--scenario", "follower-catch-up", "--trace"]) == 0
    cases, _ = datadriven.parse(scenario_path("follower-catch-up").read_text())
    expected = "".join(c.expected for c in cases)
    assert capsys.readouterr().out == expected + "sim: scenario follower-catch-up passed every invariant\n"


def test_cli_lists_the_scenarios(capsys):
    assert sim_main(["--list"]) == 0
    # each name opens a line, followed by what the scenario shows
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == scenario_names()


def test_a_wrong_expected_block_fails_with_a_diff_and_rewrite_fixes_it(tmp_path):
    original = scenario_path("leader-crash").read_text()
    broken = tmp_path / "leader-crash.txt"
    # one expected line of one command made wrong
    broken.write_text(original.replace("    n2: down\n", "    n2: Leader    term=9\n", 1))
    with pytest.raises(datadriven.Mismatch) as failure:
        check_scenario(broken)
    message = str(failure.value)
    first_line = message.splitlines()[0]
    cases, _ = datadriven.parse(original)
    changed = next(c for c in cases if "    n2: down\n" in c.expected)
    assert changed.name == "wait-leader"
    assert first_line.startswith(f"{broken}:{changed.line}:") and "output of 'wait-leader' differs" in first_line
    assert "\n-    n2: Leader    term=9\n+    n2: down\n" in message
    assert "--rewrite" in message
    check_scenario(broken, rewrite=True)
    assert broken.read_text() == original
    check_scenario(broken)
