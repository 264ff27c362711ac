"""Lessons: guided tours of the simulator, with Back and Next and a "try it" the page checks.

Theory of operation: a :class:`Lesson` builds a :class:`~raftkv.learn.world.World`
from a script (:class:`Builder`): learner actions (the same verbs the page
offers) and waits for a condition on the simulated cluster. Each ``stop`` marks
the frame the script has reached with a title and a text; the page's Back and
Next seek to those frames, so going back shows exactly the state and the
narration it showed going forward. A lesson ends with a "try it": a task for
the learner and a check of the branch they made (:meth:`Lesson.check`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from raftkv.sim.invariants import Violation

from .world import Spec, World

__all__ = ["LESSONS", "Builder", "Lesson"]


class Builder:
    """A lesson's script: acts on a world and marks stops."""

    def __init__(self, spec: Spec) -> None:
        self.world = World(spec)
        self.stops: list[dict] = []
        self.marks: dict[str, int] = {}

    @property
    def cluster(self):
        return self.world.cluster

    @property
    def frames(self) -> int:
        return len(self.world.branch.frames)

    def act(self, verb: str, node: str | None = None, **kwargs) -> None:
        self.world.act(self.frames, verb, node=node, **kwargs)

    def until(self, condition: Callable, limit: int = 5000, what: str = "condition") -> None:
        try:
            self.world.run_until(condition, limit)
        except Violation:
            raise Violation("Lesson", f"{what} not reached within {limit} frames") from None

    def frames_for(self, count: int) -> None:
        self.world.extend(self.frames + count)

    def stop(self, title: str, text: str) -> None:
        self.stops.append({"frame": self.frames - 1, "title": title, "text": text})

    def mark(self, name: str) -> None:
        self.marks[name] = self.frames


@dataclass
class Lesson:
    name: str
    title: str
    summary: str
    spec: Spec
    script: Callable[[Builder], None]
    try_it: str
    checker: Callable[[World, dict], tuple[bool, str]]
    marks: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "summary": self.summary, "try_it": self.try_it}

    def build(self) -> tuple[World, list[dict]]:
        builder = Builder(self.spec)
        self.script(builder)
        builder.stops.append({"frame": builder.frames - 1, "title": "Try it", "text": self.try_it, "try_it": True})
        world = builder.world
        world.marks = dict(builder.marks)
        world.extend(builder.frames + 200)
        return world, builder.stops

    def check(self, world: World) -> tuple[bool, str]:
        return self.checker(world, getattr(world, "marks", {}))


LESSONS: dict[str, Lesson] = {}
