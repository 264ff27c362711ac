"""A lab failure opened step by step in the learning page: a planted bug's
failing run, recorded with the learner's function in place, is served as
frames whose last one, the step that broke the invariant, carries it."""

from __future__ import annotations

import pathlib

from aiohttp.test_utils import TestClient, TestServer
from lab_planted import PLANTED

from raftkv.http.pages.learn import recording_app
from raftkv.lab.cli import main
from raftkv.lab.exercises import BY_NAME
from raftkv.lab.grader import run_seed
from raftkv.lab.loader import load_function
from raftkv.lab.opening import record
from raftkv.lab.tracing import Trace


def _plant(tmp_path: pathlib.Path, bug: str):
    exercise, source, invariants = PLANTED[bug]
    (tmp_path / f"{exercise}.py").write_text(source, encoding="utf-8")
    return BY_NAME[exercise], invariants


async def test_a_planted_bug_opens_in_the_learning_page_at_the_step_that_broke(tmp_path):
    ex, invariants = _plant(tmp_path, "two votes in one term")
    lines: list[str] = []
    recordings = []

    def serve(recording, host, port, out):   # what raftkv's command line does, without serving forever
        recordings.append(recording)
        return 0

    assert main(["check", str(tmp_path)], out=lines.append) == 1
    opens = next(line for line in lines if "learning page" in line).split(": ", 1)[1]
    assert opens.startswith(f"raftkv lab open {tmp_path} --only vote --scenario ")
    assert main(opens.split()[2:], out=lines.append, serve=serve) == 0
    [recording] = recordings

    app, world_id = recording_app(recording)
    async with TestClient(TestServer(app)) as client:
        page = await client.get(f"/ui/learn?recording={world_id}")
        assert page.status == 200
        summary = await (await client.get(f"/ui/learn/sim/{world_id}")).json()
        about = summary["recording"]
        assert about["invariant"] in invariants and about["function"] == ex.function
        assert summary["ended"] and about["broke_at"] == summary["frames"] - 1
        body = await (await client.get(f"/ui/learn/sim/{world_id}/frames",
                                       params={"from": "0", "count": str(summary["frames"])})).json()
        frames = body["frames"]
        assert [f["i"] for f in frames] == list(range(summary["frames"]))
        last = frames[-1]
        assert last["broke"]["invariant"] == about["invariant"]
        assert "a term has at most one leader" in last["broke"]["plain"]
        # the learner's calls, the terminal's >>> lines, are in the narration of their steps
        calls = [s["text"] for f in frames for s in f["narration"] if s.get("call")]
        assert any("calls your grant_vote(VoteRequest(" in c and "returned VoteDecision(granted=True" in c
                   for c in calls)
        # a recorded run is replayed, not steered
        refused = await client.post(f"/ui/learn/sim/{world_id}/act", json={"at": 3, "verb": "crash", "node": "n1"})
        assert refused.status == 400 and "recorded" in (await refused.json())["error"]
        # the page's own simulator still works next to it, and does not push the recording out
        for _ in range(9):
            assert (await client.post("/ui/learn/sim", json={"nodes": 3, "seed": 1})).status == 200
        assert (await client.get(f"/ui/learn/sim/{world_id}")).status == 200


def test_a_randomized_run_records_the_same_failure_check_reports(tmp_path):
    ex, invariants = _plant(tmp_path, "replying before persisting the vote")
    fn = load_function(tmp_path, ex)
    graded = run_seed(ex, fn, 1, str(tmp_path), Trace(40))
    recording, failure = record(ex, fn, str(tmp_path), seed=1)
    assert graded is not None and failure is not None
    assert failure.invariant == graded.invariant and failure.invariant in invariants
    assert graded.opens == f"raftkv lab open {tmp_path} --only {ex.name} --seed 1"
    count = recording.summary()["frames"]
    last = recording.frames(count - 1, 1)[0]
    assert last["broke"]["invariant"] == failure.invariant and last["broke"]["detail"] == failure.detail
    assert recording.about["where"] == "seed 1"
