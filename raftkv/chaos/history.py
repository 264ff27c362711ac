"""Operation histories: what clients asked, when, and what they were told.

Theory of operation
-------------------
An :class:`Op` is one client operation on one key: ``set`` (write
``value``), ``get`` (read; ``value`` is what was read, ``None`` for an
absent key) or ``remove`` (delete; ``removed`` is the server's answer
whether the key existed). ``call`` and ``ret`` are the times (seconds,
one monotonic clock for the whole run) the request was sent and the answer
received (for an unknown op: when the client gave up waiting).

``outcome`` is the client's knowledge, never a guess:

* ``ok``: the operation took effect (a 200, or a 404 for a read);
* ``fail``: it certainly did not take effect (a 503 with
  ``outcome_unknown: false``, a refused connection, a 4xx);
* ``unknown``: it may or may not take effect, now or later (a timeout, a
  503 with ``outcome_unknown: true``, a dropped connection after the
  request was sent). The checker ignores an unknown op's return time and
  treats it as still running forever.

Histories are stored as JSON lines (one op per line) so a failing run can be
replayed with ``python -m raftkv.chaos.checker HISTORY.jsonl``. Lines with
``"type": "fault"`` record nemesis windows (``start``/``end``/``name``)
for the timeline; the checker ignores them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

__all__ = ["FaultWindow", "Op", "OK", "FAIL", "UNKNOWN", "load_history", "save_history"]

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
OUTCOMES = (OK, FAIL, UNKNOWN)
FUNCTIONS = ("set", "get", "remove")


@dataclass
class Op:
    id: int
    client: int
    f: str
    key: str
    call: float
    ret: float | None = None
    outcome: str = UNKNOWN
    value: str | None = None
    removed: bool | None = None
    node: str = ""
    status: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.f not in FUNCTIONS:
            raise ValueError(f"op {self.id}: unknown function {self.f!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"op {self.id}: unknown outcome {self.outcome!r}")

    @property
    def is_write(self) -> bool:
        return self.f != "get"

    def to_json(self) -> dict:
        return {"type": "op", **asdict(self)}

    def describe(self) -> str:
        ret = "∞" if self.ret is None or self.outcome == UNKNOWN else f"{self.ret:.3f}"
        what = {"set": f"set({self.value!r})", "get": f"get() -> {self.value!r}",
                "remove": f"remove() -> removed={self.removed}"}[self.f]
        return (f"#{self.id} c{self.client}@{self.node or '?'} [{self.call:.3f}, {ret}] "
                f"{self.key} {what} {self.outcome}" + (f" ({self.error})" if self.error else ""))


@dataclass
class FaultWindow:
    name: str
    start: float
    end: float | None = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"type": "fault", **asdict(self)}


def save_history(path: str | Path, ops: Iterable[Op], faults: Iterable[FaultWindow] = (),
                 meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        if meta:
            f.write(json.dumps({"type": "meta", **meta}, ensure_ascii=False) + "\n")
        for w in faults:
            f.write(json.dumps(w.to_json(), ensure_ascii=False) + "\n")
        for op in ops:
            f.write(json.dumps(op.to_json(), ensure_ascii=False) + "\n")
    return path


def load_history(path: str | Path) -> tuple[list[Op], list[FaultWindow], dict]:
    ops: list[Op] = []
    faults: list[FaultWindow] = []
    meta: dict = {}
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            doc = json.loads(line)
            kind = doc.pop("type", "op")
            if kind == "op":
                ops.append(Op(**doc))
            elif kind == "fault":
                faults.append(FaultWindow(**doc))
            elif kind == "meta":
                meta.update(doc)
    return ops, faults, meta


def unavailability(ops: Iterable[Op], faults: Iterable[FaultWindow], end: float | None = None) -> dict[str, float]:
    """Per fault kind, the longest stretch with no operation succeeding that
    overlaps a window of that fault (seconds). A stretch runs from one
    successful return to the next (or to ``end``)."""
    returns = sorted(op.ret for op in ops if op.outcome == OK and op.ret is not None)
    if end is not None:
        returns.append(end)
    worst: dict[str, float] = {}
    for w in faults:
        w_end = w.end if w.end is not None else (end if end is not None else w.start)
        best = 0.0
        prev = None
        for t in returns:
            if prev is not None and t >= w.start and prev <= w_end:
                best = max(best, t - prev)
            prev = t
        worst[w.name] = max(worst.get(w.name, 0.0), round(best, 3))
    return worst
