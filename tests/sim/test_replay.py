"""Step traces of simulated nodes, replayed through a fresh core."""

from __future__ import annotations

import dataclasses
import json
import struct

import msgpack
import pytest

from raftkv.cli.main import main as cli_main
from raftkv.node.trace import OpaqueHandle, TraceRecorder, decode, encode, read_records
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand, Configuration, Server, Suffrage
from raftkv.raft.messages import AppendEntries, Entry, EntryType, InstallSnapshot, SnapshotMeta
from raftkv.raft.node import PersistentState, RaftConfig
from raftkv.sim import fuzz, scenarios
from raftkv.sim.cluster import SimCluster
from raftkv.sim.playback.replay import replay_document, replay_files, summary


def record_scenario_traces(name: str, tmp_path) -> dict[str, str]:
    paths: dict[str, str] = {}

    def attach(script):
        for node_id in script.cluster.nodes:
            paths[node_id] = str(tmp_path / f"{node_id}.trace")
            script.cluster.recorders[node_id] = TraceRecorder(paths[node_id])
    scenarios.play(scenarios.scenario_path(name), None, on_script=attach)
    return paths


def recorded_steps(path: str) -> int:
    return sum(1 for r in read_records(path) if r["k"] == "step")


def rewrite(path: str, change) -> None:
    """Write the file again with ``change(records)`` applied."""
    records = list(read_records(path))
    change(records)
    with open(path, "wb") as f:
        for record in records:
            body = msgpack.packb(record, use_bin_type=True)
            f.write(struct.pack(">I", len(body)) + body)


def test_values_survive_the_encoding():
    conf = Configuration((Server("n1", "a:1"), Server("n2", "a:2", Suffrage.NONVOTER)))
    values = [
        ev.Tick(5),
        ev.Receive("n2", AppendEntries(3, "n2", "a:2", 4, 2, (Entry(5, 3, EntryType.NOOP, b""),
                                                              Entry(6, 3, EntryType.COMMAND, b"\x00x")), 4)),
        ev.ProposeBatch((ev.Propose(1, b"a"), ev.Propose(2, b"b"))),
        ev.ChangeMembership(7, ConfigCommand.ADD_NONVOTER, "n3", "a:3"),
        ev.Receive("n2", InstallSnapshot(3, "n2", "a:2", SnapshotMeta(9, 3, conf, 2, "3-9-1", 100),
                                         SnapshotMeta(9, 3, conf, 2, "3-9-1", 100))),
        PersistentState(3, "n2", 4, SnapshotMeta(2, 1, conf, 1), (Entry(3, 1), Entry(4, 3))),
        RaftConfig(heartbeat_timeout=50, pre_vote=False),
        fx.Rejected(3, fx.RejectReason.NOT_LEADER, "node is not the leader", "n2", "a:2"),
    ]
    for value in values:
        packed = msgpack.unpackb(msgpack.packb(encode(value), use_bin_type=True), raw=False)
        assert decode(packed) == value


def test_opaque_handles_keep_their_description():
    class Backup:
        path = "/volume/upload-1"
    encoded = encode(ev.RestoreUserSnapshot(4, Backup()))
    event = decode(encoded)
    assert event.data == OpaqueHandle("Backup", "Backup(/volume/upload-1)")
    # what a replayed core hands back compares equal to what was recorded
    meta = SnapshotMeta(10, 2)
    assert encode(fx.RestoreSnapshot(meta, event.data)) == encode(fx.RestoreSnapshot(meta, Backup()))


@pytest.mark.parametrize("name", ["leader-crash", "snapshot-install", "figure-8", "snapshot-conflicting-suffix",
                                  "nonvoter-join-and-promotion", "leadership-transfer"])
def test_scenario_replays_without_divergence(name, tmp_path):
    paths = record_scenario_traces(name, tmp_path)
    lines: list[str] = []
    results = replay_files(list(paths.values()), out=lines.append)
    assert [r.divergence for r in results] == [None] * len(results)
    assert sum(r.steps for r in results) == sum(recorded_steps(p) for p in paths.values()) > 20
    assert any(line.startswith("----{") for line in lines)
    assert any("raft: entering leader state" in line for line in lines)
    assert any(" append " in line and "(fsync)" in line for line in lines), "the executor's lines"
    assert summary(results).startswith(f"replayed {sum(r.steps for r in results)} steps, 0 divergences")


def test_restarted_node_replays_each_incarnation(tmp_path):
    paths = record_scenario_traces("leader-crash", tmp_path)
    results = replay_files(list(paths.values()), out=None)
    assert max(r.incarnations for r in results) == 2
    assert all(r.divergence is None for r in results)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomized_fault_run_replays_without_divergence(seed, tmp_path, monkeypatch):
    """Drops, duplicates, partitions, crashes (also in the middle of a step),
    restarts, membership churn and snapshots."""
    paths: list[str] = []

    def recording_cluster(*args, **kwargs):
        cluster = SimCluster(*args, **kwargs)
        for node_id in cluster.nodes:
            paths.append(str(tmp_path / f"{node_id}.trace"))
            cluster.recorders[node_id] = TraceRecorder(paths[-1])
        return cluster
    monkeypatch.setattr(fuzz, "SimCluster", recording_cluster)
    run = fuzz.run_once(seed, chaos_ms=3000)
    assert run.violation is None
    results = replay_files(paths, out=None)
    assert [r.divergence for r in results] == [None] * len(results)
    assert sum(r.steps for r in results) >= run.steps


def test_recording_leaves_the_simulation_unchanged(tmp_path):
    plain: list[str] = []
    scenarios.play(scenarios.scenario_path("leader-crash"), plain.append)
    recorded: list[str] = []

    def attach(script):
        for node_id in script.cluster.nodes:
            script.cluster.recorders[node_id] = TraceRecorder(str(tmp_path / f"{node_id}.trace"))
    scenarios.play(scenarios.scenario_path("leader-crash"), recorded.append, on_script=attach)
    assert recorded == plain


def test_altered_event_is_reported_as_a_divergence(tmp_path):
    paths = record_scenario_traces("leader-crash", tmp_path)
    path = paths["n1"]

    def newer_term(records):
        # a message from a term the sender never reached
        for record in records:
            if record["k"] == "step" and record["ev"] and record["ev"]["@"] == "Receive":
                message = decode(record["ev"]["f"][1])
                if isinstance(message, AppendEntries):
                    record["ev"]["f"][1] = encode(dataclasses.replace(message, term=message.term + 5))
                    return
        raise AssertionError("no AppendEntries received")
    rewrite(path, newer_term)
    results = replay_files([path], out=None)
    divergence = results[0].divergence
    assert divergence is not None and divergence.event.startswith("Receive ")
    report = divergence.report()
    assert report.startswith(f"DIVERGENCE in {path} (node n1, incarnation 1) at step ")
    assert "the steps before it:" in report and "recorded:" in report


def test_altered_effect_is_reported_with_both_sides(tmp_path, capsys):
    paths = record_scenario_traces("first-election", tmp_path)
    path = paths["n2"]
    state = {}

    def drop_an_effect(records):
        for record in records:
            if record["k"] == "step" and len(record["fx"]) > 2:
                state["n"] = record["n"]
                del record["fx"][1]
                return
    rewrite(path, drop_an_effect)
    assert cli_main(["replay", *paths.values()]) == 1
    out = capsys.readouterr().out
    assert f"at step {state['n']}" in out and "effects differ" in out
    assert "  recorded: " in out and "  replayed: " in out
    assert out.strip().splitlines()[-1].startswith("replayed ")
    assert "1 divergences" in out.strip().splitlines()[-1]


def test_altered_status_is_reported(tmp_path):
    paths = record_scenario_traces("first-election", tmp_path)

    def bump_term(records):
        steps = [r for r in records if r["k"] == "step"]
        steps[-1]["st"][2] += 1  # STATUS_KEYS[2] is the term
    rewrite(paths["n1"], bump_term)
    divergence = replay_files([paths["n1"]], out=None)[0].divergence
    assert divergence is not None and divergence.what == "status"
    assert any(d.startswith("status term: recorded ") for d in divergence.details)


def test_core_changed_outside_step_is_caught(tmp_path):
    """The split-vote scenario moves election timers by hand (its ``timeout``
    verb writes the core's deadline): that input never went through step."""
    paths = record_scenario_traces("split-vote", tmp_path)
    results = replay_files(list(paths.values()), out=None)
    assert any(r.divergence is not None for r in results)


def test_cli_replays_and_summarises(tmp_path, capsys):
    paths = record_scenario_traces("snapshot-install", tmp_path)
    assert cli_main(["replay", "--quiet", *paths.values()]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    total = sum(recorded_steps(p) for p in paths.values())
    assert out[-1] == f"replayed {total} steps, 0 divergences (3 files, 4 runs)"


def test_partial_last_frame_is_dropped_and_appending_goes_on(tmp_path):
    paths = record_scenario_traces("first-election", tmp_path)
    path = paths["n1"]
    steps = recorded_steps(path)
    with open(path, "ab") as f:
        f.write(struct.pack(">I", 500) + b"\x81\xa1k")  # a kill in the middle of a write
    assert recorded_steps(path) == steps
    recorder = TraceRecorder(path)
    recorder.start("n1", "n1:7000", RaftConfig(), PersistentState(), 1, 0)
    recorder.close()
    kinds = [r["k"] for r in read_records(path)]
    assert kinds[-1] == "start" and kinds.count("start") == 2
    assert replay_files([path], out=None)[0].divergence is None


def test_dashboard_document_has_the_recorders_shape(tmp_path):
    paths = record_scenario_traces("leader-crash", tmp_path)
    doc = replay_document(list(paths.values()))
    assert doc["passed"] and doc["error"] is None and doc["nodes"] == ["n1", "n2", "n3"]
    steps = doc["steps"]
    assert steps and [s["index"] for s in steps] == list(range(len(steps)))
    assert [s["t"] for s in steps] == sorted(s["t"] for s in steps)
    for step in steps:
        assert [n["id"] for n in step["nodes"]] == doc["nodes"]
        assert set(step) >= {"label", "t", "notes", "logs", "messages", "nodes"}
    assert any(l["message"] == "election won" for s in steps for l in s["logs"])
    leaders = [n for n in steps[-1]["nodes"] if n.get("role") == "Leader"]
    assert leaders and leaders[0]["entries"][-1][0] == leaders[0]["last_log_index"]
    json.dumps(doc)
