"""Grading an exercise: scenarios, then seeded randomized runs, first failure explained.

Theory of operation: an exercise is graded with only its own function
swapped into the core (:func:`grade`), so a failure points at that function.
The exercise's scenarios run first, each a fixed script on a fixed seed;
then ``seeds`` randomized simulator runs (:func:`raftkv.sim.fuzz.run_once`:
drops, duplicates, reordering, partitions, crashes, lost disks, membership
churn, clients whose reads are checked against acknowledged writes), seeds
1..N. The first broken invariant stops grading; :class:`Failure` carries
what a learner needs to understand it: the invariant in plain words, where
(scenario or seed) and the command that replays it, the last steps of the
run with the learner's calls marked, and the paper's rule.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from raftkv.raft.rules import DEFAULT_RULES
from raftkv.sim.fuzz import run_once
from raftkv.sim.invariants import Violation
from raftkv.sim.scenarios import play, scenario_path

from .exercises import Exercise
from .history import HISTORY_SEED_BASE, explain, judge, recorded
from .tracing import MARK, LearnerError, NotWritten, Trace, installed, wrap

LAB_SCENARIOS = pathlib.Path(__file__).parent / "scenarios"

# What each invariant means, for someone who has read the paper once.
PLAIN = {
    "Election Safety": "two servers became leader in the same term; a term has at most one leader (§5.2, Figure 3)",
    "Log Matching": "two logs hold an entry with the same index and term but differ before it (§5.3, Figure 3)",
    "Leader Completeness": "a leader was elected without an entry that was already committed; every "
                           "committed entry must be in the logs of all later leaders (§5.4, Figure 3)",
    "State Machine Safety": "two servers applied different commands at the same index (§5.4.3, Figure 3)",
    "Committed entries never truncated": "a server deleted an entry it had already committed (§5.3, §5.4)",
    "Monotonic indexes": "a commit or applied index went backwards; what is committed stays committed",
    "Apply at once": "a server's applied index stopped short of its commit index",
    "Persist before send": "a message spoke for a term, vote or entries its sender had not yet written to "
                           "disk (Figure 2: persistent state is updated before responding)",
    "Persist before apply": "entries reached the state machine before they were on disk",
    "Linearizable read": "a read missed a write acknowledged before the read began (§8)",
    "Liveness": "once every fault healed, the cluster did not elect a leader and commit a write within the "
                "bound: the rules stopped making progress",
    "Scenario": "a scenario waited for something that never happened: the rules stopped making progress",
    "Linearizability": "the clients' history cannot be ordered: some read returned a value that no order of "
                       "the writes, each taking effect between its call and its acknowledgement, explains "
                       "(§8; thesis §6.4)",
}


@dataclass
class Failure:
    exercise: Exercise
    where: str                     # "scenario NAME" or "seed N"
    invariant: str
    plain: str
    detail: str
    replay: str
    trace: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)   # a non-linearizable history, as the checker explains it
    opens: str | None = None       # the command that opens the run in the learning page (one run shows it)

    def render(self) -> list[str]:
        ex = self.exercise
        out = [f"FAIL {ex.name}: {self.invariant} ({self.where})",
               f"  what broke: {self.plain}",
               f"  detail: {self.detail}",
               f"  replay: {self.replay}"]
        if self.opens:
            out.append(f"  step by step in the learning page: {self.opens}")
        if self.trace:
            out.append(f"  the last steps before the break ({MARK} marks your {ex.function}):")
            out += [f"    {line}" for line in self.trace]
        if self.history:
            out.append("  the clients' history (times in simulated ms):")
            out += [f"    {line}" for line in self.history]
        out += [f"  the rule it points at: {ex.paper}",
                f"  stuck? raftkv lab check DIR --hint {ex.name}"]
        return out


def _violation_failure(ex: Exercise, where: str, replay: str, exc: BaseException, trace: Trace) -> Failure:
    if isinstance(exc, Violation):
        plain = PLAIN.get(exc.invariant, exc.invariant)
        if exc.invariant not in PLAIN:
            plain = exc.detail.split(". ", 1)[-1] if ". " in exc.detail else exc.invariant
        return Failure(ex, where, exc.invariant, plain, exc.detail, replay, list(trace.lines))
    if isinstance(exc, NotWritten):
        return Failure(ex, where, "Not written yet", f"{ex.function} still raises NotImplementedError: write it "
                       f"in {ex.name}.py, following its docstring", str(exc), replay, [])
    if isinstance(exc, LearnerError):
        return Failure(ex, where, "Your function failed", str(exc), str(exc), replay, list(trace.lines))
    text = f"{type(exc).__name__}: {exc}"
    return Failure(ex, where, "The core could not carry out your decision",
                   "your function returned a decision that does not fit the log (for instance entries "
                   "to append that do not continue it)", text, replay, list(trace.lines))


def scenario_file(name: str) -> pathlib.Path:
    if name.startswith("lab:"):
        return LAB_SCENARIOS / f"{name[4:]}.txt"
    return scenario_path(name)


def run_scenario(ex: Exercise, fn: Callable, name: str, lab_dir: str, trace: Trace) -> Failure | None:
    rules = wrap(replace(DEFAULT_RULES, **{ex.function: fn}), (ex.function,), trace)
    replay = f"raftkv lab check {lab_dir} --only {ex.name} --scenario {name} --full"
    try:
        with installed(rules, trace):
            play(scenario_file(name))
    except Exception as exc:  # a broken invariant, or the core refused the learner's decision
        return _opens(_violation_failure(ex, f"scenario {name}", replay, exc, trace),
                      f"raftkv lab open {lab_dir} --only {ex.name} --scenario {name}")
    return None


def _opens(failure: Failure, command: str) -> Failure:
    if failure.invariant != "Not written yet":
        failure.opens = command
    return failure


def run_seed(ex: Exercise, fn: Callable, seed: int, lab_dir: str, trace: Trace) -> Failure | None:
    rules = wrap(replace(DEFAULT_RULES, **{ex.function: fn}), (ex.function,), trace)
    replay = f"raftkv lab check {lab_dir} --only {ex.name} --seed {seed} --full"
    opens = f"raftkv lab open {lab_dir} --only {ex.name} --seed {seed}"
    try:
        with installed(rules, trace):
            result = run_once(seed)
    except Exception as exc:
        return _opens(_violation_failure(ex, f"seed {seed}", replay, exc, trace), opens)
    if result.violation is not None:
        return _opens(_violation_failure(ex, f"seed {seed}", replay, result.violation, trace), opens)
    return None


def run_history(ex: Exercise, fn: Callable, seed: int, lab_dir: str, trace: Trace) -> Failure | None:
    """One randomized run whose client history is judged as a whole (history.py)."""
    rules = wrap(replace(DEFAULT_RULES, **{ex.function: fn}), (ex.function,), trace)
    replay = f"raftkv lab check {lab_dir} --only {ex.name} --history-seed {seed}"
    where = f"history seed {seed}"
    ops: list = []
    try:
        with installed(rules, trace), recorded(ops):
            result = run_once(seed)
    except Exception as exc:
        return _violation_failure(ex, where, replay, exc, trace)
    if result.violation is not None:
        return _violation_failure(ex, where, replay, result.violation, trace)
    verdict = judge(ops)
    if verdict.ok is False:
        detail, lines = explain(verdict)
        return Failure(ex, where, "Linearizability", PLAIN["Linearizability"], detail, replay, history=lines)
    return None


def grade(ex: Exercise, fn: Callable, lab_dir: str, seeds: int | None = None, out=print,
          keep: int = 40) -> Failure | None:
    """Scenarios, then seeds 1..N; the first failure, or None if all passed."""
    for name in ex.scenarios:
        failure = run_scenario(ex, fn, name, lab_dir, Trace(keep))
        if failure is not None:
            return failure
        out(f"  ok  scenario {name}")
    count = ex.seeds if seeds is None else seeds
    for seed in range(1, count + 1):
        failure = run_seed(ex, fn, seed, lab_dir, Trace(keep))
        if failure is not None:
            return failure
    if count:
        out(f"  ok  {count} randomized runs under faults (seeds 1..{count}), reads checked against acknowledged writes")
    histories = ex.history_seeds if seeds is None else min(seeds, ex.history_seeds)
    first = HISTORY_SEED_BASE + 1
    for seed in range(first, first + histories):
        failure = run_history(ex, fn, seed, lab_dir, Trace(keep))
        if failure is not None:
            return failure
    if histories:
        out(f"  ok  {histories} client histories linearizable (seeds {first}..{first + histories - 1}), "
            "checked as a whole by raftkv's porcupine-style checker")
    return None
