"""A lab failure opened step by step in the learning page.

Theory of operation: :func:`record` runs one scenario or one seed exactly as
``raftkv lab check`` replays it (the same rules, wrapped and checked by
:mod:`raftkv.lab.tracing`), while :func:`raftkv.learn.recording.recording`
draws the simulated cluster as the learning page's frames. The learner's
calls, which the terminal trace marks ``>>>``, join the narration of the
step they were made in; the last frame, the step that broke the invariant,
carries the invariant's plain-words explanation. The result is a
:class:`~raftkv.learn.recording.Recording`, which ``raftkv lab open`` serves
(the HTTP side is built by the command line, never here).
"""

from __future__ import annotations

from collections.abc import Callable

from raftkv.learn.recording import Recorder, Recording, recording

from .exercises import Exercise
from .grader import Failure, run_scenario, run_seed
from .tracing import MARK, Trace

__all__ = ["record"]


class _Calls(Trace):
    """A Trace that also hands each of the learner's calls, with its answer,
    to the recorder drawing the run."""

    def __init__(self, keep: int, recorders: list[Recorder], function: str) -> None:
        super().__init__(keep)
        self.recorders = recorders
        self.function = function
        self._call: str | None = None

    def add(self, line: str) -> None:
        super().add(line)
        text = line.strip()
        if not text.startswith(MARK) or not self.recorders:
            return
        text = text[len(MARK):].strip()
        if text.startswith("returned "):
            said = f"{self._call or self.function} → {text}"
        elif " raised " in text:
            said = text
        else:
            self._call = text
            return
        self._call = None
        node, _, call = said.partition(" ")
        self.recorders[-1].note({"text": f"{node} calls your {call}", "paper": None, "source": None,
                                 "function": None, "call": True})


def record(ex: Exercise, fn: Callable, lab_dir: str, seed: int | None = None,
           scenario: str | None = None) -> tuple[Recording, Failure | None]:
    """One run (``seed`` or ``scenario``) with the learner's ``fn`` in place,
    as frames of the learning page; and its failure, if it failed."""
    recorders: list[Recorder] = []
    trace = _Calls(40, recorders, ex.function)
    with recording(recorders):
        failure = (run_seed(ex, fn, seed, lab_dir, trace) if seed is not None
                   else run_scenario(ex, fn, scenario or "", lab_dir, trace))
    if not recorders:
        raise LookupError(f"the run of {ex.name} built no simulated cluster")
    recorder = recorders[-1]
    broke = None
    if failure is not None:
        broke = {"invariant": failure.invariant, "plain": failure.plain, "detail": failure.detail}
    frames, skipped = recorder.finish(broke)
    where = f"seed {seed}" if seed is not None else f"scenario {scenario}"
    about = {"exercise": ex.name, "function": ex.function, "where": where, "rule": ex.paper,
             "skipped": skipped, "broke_at": len(frames) - 1 if failure is not None else None,
             "ended": (f"the run broke {failure.invariant} here" if failure is not None
                       else "the run ends here: it passed")}
    if failure is not None:
        about.update(broke or {})
        about["replay"] = failure.replay
    return Recording(frames, recorder.spec, about), failure
