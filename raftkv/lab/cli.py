"""``raftkv lab``: list, start, check and solve the Raft lab's exercises.

Theory of operation: ``start`` and ``solve`` copy an exercise's template or
reference solution into ``DIR/NAME.py`` (never over a file that exists,
unless ``--force``); ``check`` grades every exercise found in DIR in the
teaching order and stops at the first failure, printing it as
:class:`~raftkv.lab.grader.Failure` renders it; ``--only``, ``--seed`` and
``--scenario`` narrow a run down to replay one failure, ``--full`` prints
the whole trace instead of its end, and ``--hint NAME`` prints the
exercise's hints. ``open`` records one failing run (the first failure, or
the ``--seed``/``--scenario`` given) as the learning page's frames and has
``serve`` (given by raftkv's command line, which builds the HTTP side) show
it until interrupted. Exit status: 0 all passed, 1 a failure, 2 a usage error.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from .exercises import BY_NAME, EXERCISES
from .grader import grade, run_history, run_scenario, run_seed
from .loader import LabDirError, load_function, present
from .opening import record
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
    o = sub.add_parser("open", help="open a failing run step by step in the learning page")
    o.add_argument("dir")
    o.add_argument("--only", choices=[e.name for e in EXERCISES], help="the exercise whose run to open")
    o.add_argument("--seed", type=int, help="open this randomized run")
    o.add_argument("--scenario", help="open this scenario")
    o.add_argument("--host", default="127.0.0.1", help="where the page is served (default 127.0.0.1)")
    o.add_argument("--port", type=int, default=8099, help="its port (default 8099; 0: any free port)")
    return p


def main(argv: list[str] | None = None, out=print, serve=None) -> int:
    """``serve(recording, host, port, out)`` shows a recording in the
    learning page until interrupted; without it ``open`` cannot serve."""
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
    if args.command == "open":
        return _open(args, out, serve)
    return _check(args, out)


def _functions(args):
    """The exercises found in DIR (narrowed by --only) and their functions; None after saying why not."""
    try:
        found = present(args.dir)
        if args.only:
            found = [e for e in found if e.name == args.only]
        if not found:
            print(f"raftkv lab: no exercise in {args.dir}; try: raftkv lab start {EXERCISES[0].name} {args.dir}",
                  file=sys.stderr)
            return None
        functions = {e.name: load_function(args.dir, e) for e in found}
    except LabDirError as exc:
        print(f"raftkv lab: {exc}", file=sys.stderr)
        return None
    return found, functions


def _open(args, out, serve) -> int:
    loaded = _functions(args)
    if loaded is None:
        return 2
    found, functions = loaded
    seed, scenario = args.seed, args.scenario
    if seed is not None or scenario:
        if len(found) > 1:
            print("raftkv lab open: --seed and --scenario need --only NAME", file=sys.stderr)
            return 2
        ex = found[0]
    else:
        # no run named: the first failure, as check finds it
        out(f"checking {args.dir} for its first failure...")
        for ex in found:
            failure = grade(ex, functions[ex.name], args.dir, out=lambda line: None)
            if failure is not None:
                break
        else:
            out(f"every exercise in {args.dir} passes: nothing to open (--seed N or --scenario S opens a run)")
            return 0
        kind, _, value = failure.where.partition(" ")
        if failure.opens is None:
            for line in failure.render():
                out(line)
            out("this failure is not one run's step: there is nothing to open step by step")
            return 1
        seed, scenario = (int(value), None) if kind == "seed" else (None, value)
    out(f"recording {ex.name} ({f'seed {seed}' if seed is not None else f'scenario {scenario}'})...")
    try:
        recording, failure = record(ex, functions[ex.name], args.dir, seed=seed, scenario=scenario)
    except FileNotFoundError as exc:
        print(f"raftkv lab open: {exc}", file=sys.stderr)
        return 2
    about = recording.about
    skipped = f" (the last of {about['skipped'] + recording.summary()['frames']})" if about["skipped"] else ""
    out(f"{recording.summary()['frames']} frames{skipped}")
    if failure is not None:
        out(f"FAIL {ex.name}: {failure.invariant}, at the last frame ({about['broke_at']})")
        out(f"  what broke: {failure.plain}")
    else:
        out(f"this run of {ex.name} passes")
    if serve is None:
        print("raftkv lab open: serving the page needs raftkv's command line (raftkv lab open)", file=sys.stderr)
        return 2
    return serve(recording, args.host, args.port, out)


def _check(args, out) -> int:
    if args.hint:
        ex = BY_NAME[args.hint]
        for i, hint in enumerate(ex.hints(), 1):
            out(f"hint {i}: {hint}")
        return 0
    loaded = _functions(args)
    if loaded is None:
        return 2
    found, functions = loaded
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
