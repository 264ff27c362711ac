"""Scenario recordings for the dashboard's replay mode and --json-trace."""

from __future__ import annotations

import json

import pytest

from raftkv.sim.cli import main as sim_main
from raftkv.sim.playback.record import record_scenario, scenario_names


@pytest.mark.parametrize("name", ["first-election", "leader-crash", "snapshot-install"])
def test_recording_has_states_messages_and_log_lines(name):
    doc = record_scenario(name)
    assert doc["passed"] and doc["error"] is None
    steps = doc["steps"]
    assert steps and [s["index"] for s in steps] == list(range(len(steps)))
    assert [s["t"] for s in steps] == sorted(s["t"] for s in steps)
    for step in steps:
        assert [n["id"] for n in step["nodes"]] == doc["nodes"]
    final = steps[-1]["nodes"]
    leaders = [n for n in final if n["up"] and n["role"] == "Leader"]
    assert len(leaders) == 1
    leader = leaders[0]
    assert leader["entries"][-1][0] == leader["last_log_index"]
    assert any(l["message"] == "election won" for s in steps for l in s["logs"])
    assert any(m.startswith(f"{leader['id']} -> ") and "AppendEntries" in m for s in steps for m in s["messages"])
    assert steps[0]["notes"], "the scenario's first note opens the recording"
    json.dumps(doc)  # plain JSON


def test_leader_crash_recording_shows_the_crash_and_the_new_leader():
    steps = record_scenario("leader-crash")["steps"]
    crash = next(i for i, s in enumerate(steps) if s["label"].startswith("Crash "))
    victim = steps[crash]["label"].split()[1]
    assert [n for n in steps[crash]["nodes"] if n["id"] == victim][0] == {"id": victim, "up": False, "role": "Down"}
    later = [n for s in steps[crash:] for n in s["nodes"] if n["up"] and n["role"] == "Leader"]
    assert later and later[-1]["id"] != victim


def test_snapshot_install_recording_shows_snapshot_index():
    steps = record_scenario("snapshot-install")["steps"]
    assert max(n.get("last_snapshot_index", 0) for s in steps for n in s["nodes"]) > 0


def test_json_trace_export(tmp_path, capsys):
    out = tmp_path / "trace.json"
    assert sim_main(["--scenario", "first-election", "--json-trace", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(record_scenario("first-election")))
    assert "first-election" in scenario_names()
    with pytest.raises(SystemExit):
        sim_main(["--json-trace", str(out)])
