"""What a chaos run leaves behind and prints, for the loopback nemeses
(tests/integration/nemesis.py) and the real-network one (netnemesis.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .timeline import draw_timeline

__all__ = ["report"]


def report(result, logs: Path, png: bool) -> int:
    """Write the verdict beside the history (and the timeline PNG), print
    where everything is, and return the exit code: 0 linearizable, 1 not,
    3 undecided. ``result`` has ``history``, ``verdict``, ``summary()``,
    ``unavailable`` and ``counts``."""
    verdict_path = result.history.with_suffix(".verdict.txt")
    verdict_path.write_text(result.summary() + "\n" + result.verdict.explain() + "\n")
    print(f"verdict: {verdict_path}")
    if png:
        print(f"timeline: {draw_timeline(result.history, result.history.with_suffix('.png'))}")
    print(f"node logs: {logs}")
    print(json.dumps({"unavailable_s": result.unavailable, "counts": result.counts}))
    return {True: 0, False: 1, None: 3}[result.verdict.ok]
