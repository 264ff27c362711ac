"""The lab's grader: reference solutions pass, templates and planted classic bugs fail, explained."""

from __future__ import annotations

import pathlib

import pytest
from lab_planted import PLANTED

from raftkv.lab.cli import main
from raftkv.lab.exercises import BY_NAME, EXERCISES
from raftkv.lab.grader import grade
from raftkv.lab.loader import load_function

SEEDS = 2   # a learner's check runs 20; the suite keeps to a few


def _grade(tmp_path: pathlib.Path, exercise: str, source: str, seeds: int = SEEDS):
    (tmp_path / f"{exercise}.py").write_text(source, encoding="utf-8")
    ex = BY_NAME[exercise]
    return grade(ex, load_function(tmp_path, ex), str(tmp_path), seeds=seeds, out=lambda line: None)


@pytest.mark.parametrize("exercise", [e.name for e in EXERCISES])
def test_every_reference_solution_passes(tmp_path, exercise):
    assert _grade(tmp_path, exercise, BY_NAME[exercise].solution()) is None


@pytest.mark.parametrize("exercise", [e.name for e in EXERCISES])
def test_every_untouched_exercise_fails_saying_it_is_not_written(tmp_path, exercise):
    failure = _grade(tmp_path, exercise, BY_NAME[exercise].template())
    assert failure is not None and failure.invariant == "Not written yet"
    text = "\n".join(failure.render())
    assert f"{BY_NAME[exercise].function} still raises NotImplementedError" in text


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_every_planted_classic_bug_fails_naming_the_invariant_and_where(tmp_path, bug):
    exercise, source, invariants = PLANTED[bug]
    failure = _grade(tmp_path, exercise, source, seeds=12)
    assert failure is not None, f"{bug}: not caught"
    assert failure.invariant in invariants, (bug, failure.invariant, failure.detail)
    text = "\n".join(failure.render())
    assert failure.where.startswith(("scenario ", "seed "))
    assert f"replay: raftkv lab check {tmp_path} --only {exercise} --" in text
    assert failure.where.split()[-1] in text.split("replay:")[1].splitlines()[0]
    assert BY_NAME[exercise].paper in text
    if failure.invariant != "Liveness":
        # the learner's calls, with arguments and results, in the steps before the break
        assert ">>> " in text and "returned" in text, text


def test_the_cli_starts_solves_checks_and_hints(tmp_path, capsys):
    lines: list[str] = []
    assert main(["list"], out=lines.append) == 0 and "1. vote" in lines[0]
    assert main(["start", "vote", str(tmp_path)], out=lines.append) == 0
    assert "NotImplementedError" in (tmp_path / "vote.py").read_text()
    assert main(["start", "vote", str(tmp_path)], out=lines.append) == 2   # never over the learner's work
    lines.clear()
    assert main(["check", str(tmp_path), "--seeds", "0"], out=lines.append) == 1
    assert any(line.startswith("FAIL vote: Not written yet") for line in lines)
    assert main(["solve", "vote", str(tmp_path), "--force"], out=lines.append) == 0
    lines.clear()
    assert main(["check", str(tmp_path), "--seeds", "1"], out=lines.append) == 0
    assert lines[-1].startswith("PASS vote")
    lines.clear()
    assert main(["check", str(tmp_path), "--only", "vote", "--seed", "1"], out=lines.append) == 0
    lines.clear()
    assert main(["check", str(tmp_path), "--hint", "vote"], out=lines.append) == 0
    assert lines[0].startswith("hint 1: ")
    assert main(["check", str(tmp_path / "nowhere")], out=lines.append) == 2


def test_a_client_history_no_order_explains_fails_with_the_read_and_its_replay(tmp_path, monkeypatch):
    from raftkv.chaos.checker import check
    from raftkv.chaos.history import OK, Op
    from raftkv.lab import grader
    from raftkv.lab.history import recorded
    from raftkv.sim.fuzz import run_once

    ops: list = []
    with recorded(ops):
        assert run_once(1001).violation is None
    assert any(op.f == "get" for op in ops) and any(op.f == "set" and op.outcome == OK for op in ops)
    assert grader.judge(ops).ok is not False
    # a read that misses a write acknowledged before it began, whatever the run recorded
    stale = [Op(0, 0, "set", "x", 0.0, 1.0, OK, "1", node="n1"), Op(1, 0, "get", "x", 2.0, 3.0, OK, None, node="n2")]
    monkeypatch.setattr(grader, "judge", lambda recorded_ops: check(stale))
    ex = BY_NAME["readindex"]
    failure = grader.run_history(ex, load_function(_write(tmp_path, ex.name), ex), 1001, str(tmp_path),
                                 grader.Trace(40))
    assert failure is not None and failure.invariant == "Linearizability"
    text = "\n".join(failure.render())
    assert "read of 'x' on n2" in failure.detail and "history seed 1001" in text
    assert f"replay: raftkv lab check {tmp_path} --only readindex --history-seed 1001" in text


def _write(tmp_path: pathlib.Path, exercise: str) -> pathlib.Path:
    (tmp_path / f"{exercise}.py").write_text(BY_NAME[exercise].solution(), encoding="utf-8")
    return tmp_path
