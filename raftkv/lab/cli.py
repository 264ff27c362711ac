"""``raftkv lab``: list, start, check and solve the Raft lab's exercises.

Theory of operation: ``start`` and ``solve`` copy an exercise's template or
reference solution into ``DIR/NAME.py`` (never over a file that exists,
unless ``--force``); ``check`` grades every exercise found in DIR in the
teaching order and stops at the first failure, printing it as
:class:`~raftkv.lab.grader.Failure` renders it; ``--only``, ``--seed`` and
``--scenario`` narrow a run down to replay one failure, ``--full`` prints
the whole trace instead of its end, and ``--hint NAME`` prints the
exercise's hints. Exit status: 0 all passed, 1 a failure, 2 a usage error.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from .exercises import BY_NAME, EXERCISES
from .grader import grade, run_history, run_scenario, run_seed
from .loader import LabDirError, load_function, present
from .tracing import Trace


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftkv lab", description="The Raft lab: write Raft's rules yourself; "
                                "the simulator grades them (docs/lab.md).")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the exercises, in order")
    for name, what in (("start", "write an exercise's template into DIR"),
                       ("solve", "write an exercise's reference solution into DIR (for teachers)")):
        s = sub.add_parser(name, help=what)
        s.add_argument("name", choices=[e.name for e in EXERCISES])
        s.add_argument("dir")
        s.add_argument("--force", action="store_true", help="overwrite DIR/NAME.py")
    c = sub.add_parser("check", help="grade the exercises found in DIR")
    c.add_argument("dir")
    c.add_argument("--only", choices=[e.name for e in EXERCISES], help="grade this exercise only")
    c.add_argument("--seeds", type=int, help="randomized runs per exercise (default: the exercise's)")
    c.add_argument("--seed", type=int, help="run this one seed (replays a failure)")
    c.add_argument("--scenario", help="run this one scenario (replays a failure)")
    c.add_argument("--history-seed", type=int, help="run this one client history (replays a failure)")
    c.add_argument("--full", action="store_true", help="print the whole trace of a failure")
    c.add_argument("--hint", metavar="NAME", choices=[e.name for e in EXERCISES], help="print hints")
    return p


def main(argv: list[str] | None = None, out=print) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "list":
        for i, e in enumerate(EXERCISES, 1):
            out(f"{i}. {e.name:<9} {e.title}")
            out(f"   write: {e.function}(req)   scenarios: {', '.join(e.scenarios)}")
        return 0
    if args.command in ("start", "solve"):
        ex = BY_NAME[args.name]
        root = pathlib.Path(args.dir)
        root.mkdir(parents=True, exist_ok=True)
        target = root / f"{ex.name}.py"
        if target.exists() and not args.force:
            print(f"raftkv lab: {target} exists; --force overwrites it", file=sys.stderr)
            return 2
        target.write_text(ex.template() if args.command == "start" else ex.solution(), encoding="utf-8")
        out(f"wrote {target}: {ex.title}")
        if args.command == "start":
            out(f"write {ex.function}() there, then: raftkv lab check {root}")
        return 0
    return _check(args, out)


def _check(args, out) -> int:
    if args.hint:
        ex = BY_NAME[args.hint]
        for i, hint in enumerate(ex.hints(), 1):
            out(f"hint {i}: {hint}")
        return 0
    try:
        found = present(args.dir)
        if args.only:
            found = [e for e in found if e.name == args.only]
        if not found:
            print(f"raftkv lab: no exercise in {args.dir}; try: raftkv lab start {EXERCISES[0].name} {args.dir}",
                  file=sys.stderr)
            return 2
        functions = {e.name: load_function(args.dir, e) for e in found}
    except LabDirError as exc:
        print(f"raftkv lab: {exc}", file=sys.stderr)
        return 2
    keep = 100000 if args.full else 40
    for ex in found:
        started = time.monotonic()
        out(f"{ex.name}: {ex.title}")
        fn = functions[ex.name]
        if args.history_seed is not None:
            failure = run_history(ex, fn, args.history_seed, args.dir, Trace(keep))
        elif args.seed is not None or args.scenario:
            failure = (run_seed(ex, fn, args.seed, args.dir, Trace(keep)) if args.seed is not None
                       else run_scenario(ex, fn, args.scenario, args.dir, Trace(keep)))
        else:
            failure = grade(ex, fn, args.dir, args.seeds, out, keep)
        if failure is not None:
            for line in failure.render():
                out(line)
            return 1
        out(f"PASS {ex.name} ({time.monotonic() - started:.1f} s)")
    return 0
