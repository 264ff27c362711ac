"""``raftkv sim``: randomized runs or one scripted scenario.

Scenarios are the files in raftkv/sim/testdata (see its README.md).

    raftkv sim --runs 1000 --seed 1        randomized fault runs, one summary line
    raftkv sim --scenario leader-crash --trace
    raftkv sim --list
"""

from __future__ import annotations

import argparse
import sys

from .fuzz import CHAOS_MS, run_many
from .invariants import Violation
from .scenarios import run_scenario, scenario_names


# The help a terminal shows: plain text (the module docstring is for readers
# of the code and uses reST markup).
DESCRIPTION = """\
The deterministic simulator: randomized fault runs with the safety
invariants checked after every step, or one scripted scenario. Scenarios
are the files in raftkv/sim/testdata (see its README.md).

examples:
  raftkv sim --runs 1000 --seed 1        randomized fault runs, one summary line
  raftkv sim --scenario leader-crash --trace
  raftkv sim --list
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftkv sim", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="randomized runs (default: 100)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the first run; run i uses seed+i (default: 1)")
    parser.add_argument("--chaos-ms", type=int, default=CHAOS_MS,
                        help=f"simulated ms of faults per run (default: {CHAOS_MS})")
    parser.add_argument("--scenario", choices=scenario_names(), metavar="NAME",
                        help="run one scripted scenario (the names: raftkv sim --list)")
    parser.add_argument("--trace", action="store_true", help="print every event of the scenario")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--json-trace", metavar="FILE",
                        help="write the scenario's steps (states, messages, log lines) as JSON, "
                             "as the dashboard's replay shows them ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.list:
        for name in scenario_names():
            print(name)
        return 0
    if args.json_trace and not args.scenario:
        parser.error("--json-trace needs --scenario")
    if args.scenario and args.json_trace:
        import json

        from .record import record_scenario
        doc = record_scenario(args.scenario)
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        if args.json_trace == "-":
            print(text)
        else:
            with open(args.json_trace, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            print(f"sim: wrote {len(doc['steps'])} steps of scenario {args.scenario} to {args.json_trace}",
                  file=sys.stderr)
        if not doc["passed"]:
            print(f"VIOLATION in scenario {args.scenario}: {doc['error']}")
            return 1
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


REPLAY_DESCRIPTION = """\
Feed the steps nodes recorded (RAFT_TRACE=FILE) through a fresh Raft core
and check that it produces the same effects and states at every step. The
trace is printed as `raftkv sim --trace` prints one; with several files
(one per node) the traces are merged by time. Exits 1 at a divergence.

examples:
  raftkv replay n1.trace
  raftkv replay --quiet n1.trace n2.trace n3.trace
  raftkv replay --json-trace run.json n*.trace     the dashboard's replay document
"""


def replay_main(argv: list[str] | None = None) -> int:
    """``raftkv replay FILE...``"""
    import json

    from raftkv.node.trace import TraceError

    from .replay import replay_document, replay_files, summary

    parser = argparse.ArgumentParser(prog="raftkv replay", description=REPLAY_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help="trace files written with RAFT_TRACE")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the summary and divergences")
    parser.add_argument("--json-trace", metavar="OUT",
                        help="write the replay as the dashboard's replay document ('-' for stdout)")
    args = parser.parse_args(argv)
    try:
        if args.json_trace:
            doc = replay_document(args.files)
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
            if args.json_trace == "-":
                print(text)
            else:
                with open(args.json_trace, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
            counts = doc["replayed"].values()
            steps = sum(c["steps"] for c in counts)
            divergences = sum(c["divergences"] for c in counts)
            print(f"replayed {steps} steps, {divergences} divergences", file=sys.stderr)
            return 1 if divergences else 0
        out = None if args.quiet else print
        results = replay_files(args.files, out=out)
    except (OSError, TraceError) as exc:
        print(f"raftkv replay: {exc}", file=sys.stderr)
        return 2
    for r in results:
        if args.quiet and r.divergence is not None:
            print(r.divergence.report())
        print(f"{r.path}: node {r.node_id}, {r.incarnations} runs, {r.steps} steps, "
              f"{'1 divergence' if r.divergence else '0 divergences'}")
    print(summary(results))
    return 1 if any(r.divergence for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
