"""Nemesis suite: real clusters under faults, histories checked for
linearizability (see nemesis.py). Each schedule runs for a bounded time
(RAFTKV_NEMESIS_SECONDS, default 20) with a seed printed for replay
(RAFTKV_NEMESIS_SEED); a failing run prints its history's path, which
``python -m raftkv.chaos.checker PATH`` re-checks.

The last test runs a deliberately broken build (reads served locally on
followers and deposed leaders) and requires the suite to catch it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nemesis import Skip, run_nemesis

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("RAFTKV_NEMESIS_SECONDS", "20"))
SEED = int(os.environ["RAFTKV_NEMESIS_SEED"]) if os.environ.get("RAFTKV_NEMESIS_SEED") else None
BROKEN = [sys.executable, str(Path(__file__).with_name("broken_node.py"))]


def _run(tmp_path, name, **kw):
    try:
        return run_nemesis(tmp_path, name, kw.pop("seconds", SECONDS), SEED, **kw)
    except Skip as exc:
        pytest.skip(str(exc))


def _assert_linearizable(result):
    v = result.verdict
    assert v.ok is True, (f"{result.summary()}\n{v.explain()}\n"
                          f"replay: python -m raftkv.chaos.checker {result.history}")
    assert not result.unexpected, [op.describe() for op in result.unexpected[:10]]
    # the run proved something: writes and reads got through, and faults happened
    assert result.ok_writes >= 20 and result.ok_reads >= 20, result.summary()
    assert result.faults, result.summary()


@pytest.mark.parametrize("name", ["kill-leader", "pause-leader", "isolate-leader", "partition",
                                  "flapping", "kill-random", "delay"])
def test_nemesis_history_is_linearizable(tmp_path, name):
    _assert_linearizable(_run(tmp_path, name))


@pytest.mark.parametrize("name,workers", [("pause-leader", 0), ("isolate-leader", 0), ("pause-leader", 2)])
def test_lease_reads_under_nemesis_are_linearizable(tmp_path, name, workers):
    """Every read at level=lease, sent to any node (followers serve them at
    the leader's read index): a paused or cut-off leader must not serve from
    a lease that ran out. With HTTP workers, a paused leader's Raft process
    is frozen while its workers go on serving from the lease board."""
    _assert_linearizable(_run(tmp_path, name, read_level="lease", seconds=min(SECONDS, 12),
                              node_env={"HTTP_WORKERS": str(workers)}))


def test_membership_change_under_load_is_linearizable(tmp_path):
    _assert_linearizable(_run(tmp_path, "membership", seconds=max(SECONDS, 25)))


def test_snapshot_under_load_is_linearizable(tmp_path):
    _assert_linearizable(_run(tmp_path, "snapshot"))


def test_suite_catches_stale_reads_of_a_broken_build(tmp_path):
    result = _run(tmp_path, "isolate-leader", seconds=min(SECONDS, 15), command=BROKEN)
    assert result.verdict.ok is False, (
        f"the broken build (local reads on followers / deposed leaders) passed: {result.summary()}")
    print(result.verdict.explain())
