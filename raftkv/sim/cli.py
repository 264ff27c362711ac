"""``raftkv sim``: randomized runs or one scripted scenario.

    raftkv sim --runs 1000 --seed 1        randomized fault runs, one summary line
    raftkv sim --scenario leader-crash --trace
    raftkv sim --list
"""

from __future__ import annotations

import argparse
import sys

from .fuzz import CHAOS_MS, run_many
from .invariants import Violation
from .scenarios import SCENARIOS, run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftkv sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="randomized runs (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run; run i uses seed+i")
    parser.add_argument("--chaos-ms", type=int, default=CHAOS_MS, help="simulated ms of faults per run")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="run one scripted scenario")
    parser.add_argument("--trace", action="store_true", help="print every event of the scenario")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.list:
        for name in SCENARIOS:
            print(name)
        return 0
    if args.scenario:
        try:
            run_scenario(args.scenario, out=print if args.trace else None)
        except Violation as exc:
            print(f"VIOLATION in scenario {args.scenario}: {exc}")
            return 1
        print(f"sim: scenario {args.scenario} passed every invariant")
        return 0
    return 1 if run_many(args.runs, args.seed, chaos_ms=args.chaos_ms) else 0


if __name__ == "__main__":
    sys.exit(main())
