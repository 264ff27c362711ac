"""``raftkv sim``: randomized runs or one scripted scenario.

Scenarios are the files in raftkv/sim/testdata (see its README.md).

    raftkv sim --runs 1000 --seed 1        randomized fault runs, one summary line
    raftkv sim --scenario leader-crash --trace
    raftkv sim --list                      each scenario and what it shows

Randomized runs take about 0.1 s each, so ``--runs 1000`` shows its progress
on stderr: a bar redrawn in place on a terminal, otherwise a line every
``PROGRESS_EVERY_S`` seconds (a CI log). The summary line stays on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import textwrap
import time

from . import fuzz
from .fuzz import CHAOS_MS, run_many
from .invariants import Violation
from .scenarios import play, run_scenario, scenario_names, scenario_path

PROGRESS_EVERY_S = 5.0
LIST_WIDTH = 100

# The help a terminal shows: plain text (the module docstring is for readers
# of the code and uses reST markup).
DESCRIPTION = """\
The deterministic simulator: randomized fault runs with the safety
invariants checked after every step, or one scripted scenario. Scenarios
are the files in raftkv/sim/testdata (see its README.md).

examples:
  raftkv sim --runs 1000 --seed 1        randomized fault runs, one summary line
  raftkv sim --scenario leader-crash --trace
  raftkv sim --scenario leader-crash --explain
  raftkv sim --list
"""


def scenario_description(name: str) -> str:
    """The first sentence of the comment a scenario file opens with."""
    lines = []
    for line in scenario_path(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    # a sentence ends at a period before a capital, not inside "Fig. 8"
    end = re.search(r"\.(?=\s+[A-Z])", text)
    return text[:end.end()] if end else text


def list_scenarios(width: int = LIST_WIDTH) -> str:
    names = scenario_names()
    pad = max(map(len, names)) + 2
    out = []
    for name in names:
        out += textwrap.wrap(scenario_description(name), width, initial_indent=name.ljust(pad),
                             subsequent_indent=" " * pad) or [name]
    return "\n".join(out)


class Progress:
    """Runs done of ``total``, on ``stream``: a bar redrawn in place on a
    terminal (at most ten times a second), otherwise one line every
    ``every_s`` seconds, so a long run is never silent."""

    def __init__(self, total: int, stream=None, tty: bool | None = None,
                 every_s: float | None = None, clock=time.monotonic) -> None:
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s if every_s is not None else 0.1 if self.tty else PROGRESS_EVERY_S
        self.clock = clock
        self.started = self.last = clock()
        self.done = 0
        self.drawn = False

    def step(self) -> None:
        self.done += 1
        now = self.clock()
        if now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        left = elapsed / self.done * (self.total - self.done)
        eta = f", about {left:.0f} s left" if self.done < self.total else ""
        if self.tty:
            filled = self.done * 30 // max(1, self.total)
            self.stream.write(f"\r[{'#' * filled}{'-' * (30 - filled)}] {self.done}/{self.total} runs, "
                              f"{elapsed:.0f} s{eta}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(f"sim: {self.done}/{self.total} runs, {elapsed:.0f} s{eta}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:  # the summary line goes where the bar was
            self.stream.write("\r\x1b[K")
            self.stream.flush()


@contextlib.contextmanager
def _counting_runs(progress: Progress):
    """Count run_many's runs as they end. run_many has no progress hook of
    its own; it looks ``run_once`` up in its module at every run, so a
    wrapper there sees each one, and the runs and their summary stay
    run_many's."""
    run_once = fuzz.run_once

    def counted(*args, **kwargs):
        result = run_once(*args, **kwargs)
        progress.step()
        return result
    fuzz.run_once = counted
    try:
        yield
    finally:
        fuzz.run_once = run_once
        progress.close()


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
    parser.add_argument("--explain", action="store_true",
                        help="print every event of the scenario and, under it, what happened and why, citing "
                             "the Raft paper and the line of raftkv/raft that decided")
    parser.add_argument("--list", action="store_true", help="list the scenarios and what each shows")
    parser.add_argument("--json-trace", metavar="FILE",
                        help="write the scenario's steps (states, messages, log lines) as JSON, "
                             "as the dashboard's replay shows them ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.list:
        print(list_scenarios())
        return 0
    if args.json_trace and not args.scenario:
        parser.error("--json-trace needs --scenario")
    if args.scenario and args.json_trace:
        import json

        from .playback.record import record_scenario
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
    if args.explain and not args.scenario:
        parser.error("--explain needs --scenario")
    if args.scenario:
        try:
            if args.explain:
                from raftkv.learn.narrate import Explainer
                play(scenario_path(args.scenario), print, on_script=lambda script: Explainer(script.cluster, print))
            else:
                run_scenario(args.scenario, out=print if args.trace else None)
        except Violation as exc:
            print(f"VIOLATION in scenario {args.scenario}: {exc}")
            return 1
        print(f"sim: scenario {args.scenario} passed every invariant")
        return 0
    with _counting_runs(Progress(args.runs)):
        violations = run_many(args.runs, args.seed, chaos_ms=args.chaos_ms)
    return 1 if violations else 0


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

    from .playback.replay import replay_document, replay_files, summary

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
