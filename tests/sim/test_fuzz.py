"""Randomized simulation runs with every fault on.

CI sets RAFTKV_SIM_RUNS (500); the first seed comes from the date so coverage
grows day by day, and it is printed so a failure can be replayed with
``raftkv sim --runs 1 --seed N``.
"""

import datetime
import os

from raftkv.sim.fuzz import run_many, run_once


def test_randomized_runs_find_no_violation():
    runs = int(os.environ.get("RAFTKV_SIM_RUNS", "100"))
    seed = int(os.environ.get("RAFTKV_SIM_SEED", datetime.date.today().strftime("%Y%m%d")) ) * 10_000
    lines: list[str] = []
    violations = run_many(runs, seed, out=lines.append)
    print(f"first seed {seed}\n" + "\n".join(lines))
    assert violations == 0, "\n".join(lines)


def test_same_seed_same_run():
    a, b = run_once(42), run_once(42)
    assert (a.steps, a.acked, a.reads) == (b.steps, b.acked, b.reads)
