"""Linearizability checker for key-value histories (Wing & Gong search with
Lowe's memoization, as in Porcupine).

Theory of operation
-------------------
A history is linearizable if every ``ok`` operation can be placed at one
instant between its call and its return, every ``unknown`` write either at
one instant after its call or nowhere, and the resulting sequence is legal
for a register per key (a read returns the last value written, ``None``
after a remove or before any write; a remove answers ``removed=True`` exactly
when the key existed). ``fail`` operations and reads that did not return are
left out: they took no effect and observed nothing.

Keys are independent registers, so the history is partitioned per key
(P-compositionality) and each key is searched on its own.

The search walks a doubly linked list of call and return events ordered by
time (calls before returns at equal times, which only makes more histories
linearizable, never fewer). At a call it tries to linearize that operation
next: if the model accepts it and the pair (set of linearized ops as a
bitmask, model state) has not been seen before, the op's call and return
are lifted out of the list and the scan restarts; at a return whose op is
not yet linearized it backtracks. Unknown ops have no return event, so
nothing ever forces them in. The memo of (bitmask, state) pairs is what
keeps this from being exponential on realistic histories.

One sound reduction keeps unknown writes from blowing up the search: an
unknown ``set(v)`` whose value no read ever returned can only matter to a
``remove`` answering ``removed=True`` that returned after the set was
called; without such a remove it is dropped (placing it nowhere is always
at least as good).

:func:`check` returns a :class:`Verdict`: ``ok`` True, False, or None when a
key's search exceeded the time budget. For a violation it names the key,
the longest linearizable prefix found and the ops that could not follow it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from .history import FAIL, OK, UNKNOWN, Op

__all__ = ["KeyResult", "Verdict", "check", "check_key", "step"]


def step(state: str | None, op: Op) -> tuple[bool, str | None]:
    """The register model: (legal?, state after) for ``op`` in ``state``."""
    if op.f == "set":
        return True, op.value
    if op.f == "get":
        return state == op.value, state
    # remove
    if op.outcome == OK and op.removed is not None:
        return (state is not None) == op.removed, None
    return True, None


@dataclass
class KeyResult:
    key: str
    ok: bool | None
    ops: int
    unknown: int
    explored: int
    seconds: float
    longest_prefix: list[Op] = field(default_factory=list)
    stuck: list[Op] = field(default_factory=list)

    def explain(self) -> str:
        if self.ok:
            return f"key {self.key!r}: linearizable ({self.ops} ops)"
        if self.ok is None:
            return f"key {self.key!r}: undecided after {self.explored} steps / {self.seconds:.1f}s"
        lines = [f"key {self.key!r}: NOT linearizable ({self.ops} ops, {self.unknown} unknown)",
                 f"  longest linearizable prefix ({len(self.longest_prefix)} ops), last 10:"]
        lines += [f"    {op.describe()}" for op in self.longest_prefix[-10:]]
        lines.append("  none of these can come next:")
        lines += [f"    {op.describe()}" for op in self.stuck[:10]]
        return "\n".join(lines)


@dataclass
class Verdict:
    ok: bool | None
    keys: dict[str, KeyResult]
    ops_checked: int
    seconds: float

    @property
    def bad_keys(self) -> list[str]:
        return [k for k, r in self.keys.items() if r.ok is False]

    def explain(self) -> str:
        head = {True: "linearizable", False: "NOT linearizable", None: "undecided"}[self.ok]
        lines = [f"{head}: {self.ops_checked} ops on {len(self.keys)} keys in {self.seconds:.2f}s"]
        for r in self.keys.values():
            if r.ok is not True:
                lines.append(r.explain())
        return "\n".join(lines)


class _Entry:
    __slots__ = ("op", "idx", "is_call", "match", "prev", "next")

    def __init__(self, op: Op | None, idx: int, is_call: bool) -> None:
        self.op = op
        self.idx = idx
        self.is_call = is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _relevant(ops: list[Op]) -> list[Op]:
    """Drop what cannot matter: failed ops, reads without an answer, and
    unknown writes of values nobody observed (see the module docstring)."""
    kept = [op for op in ops if op.outcome != FAIL and not (op.f == "get" and op.outcome != OK)]
    observed = {op.value for op in kept if op.f == "get"}
    removes = [op for op in kept if op.f == "remove" and op.outcome == OK and op.removed]
    out = []
    for op in kept:
        if op.f == "set" and op.outcome == UNKNOWN and op.value not in observed:
            if not any(r.ret is not None and r.ret >= op.call for r in removes):
                continue
        out.append(op)
    return out


def check_key(key: str, ops: list[Op], initial: str | None = None,
              deadline: float | None = None) -> KeyResult:
    started = time.monotonic()
    ops = _relevant(ops)
    n = len(ops)
    unknown = sum(1 for op in ops if op.outcome == UNKNOWN)
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if op.outcome == OK:
            if op.ret is None:
                raise ValueError(f"op {op.id} is ok but has no return time")
            events.append((max(op.ret, op.call), 1, i))
    events.sort()
    head = _Entry(None, -1, False)
    calls: dict[int, _Entry] = {}
    prev = head
    for _t, kind, i in events:
        e = _Entry(ops[i], i, kind == 0)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
        prev.next = e
        e.prev = prev
        prev = e

    def lift(e: _Entry) -> None:
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        if m is not None:
            m.prev.next = m.next
            if m.next is not None:
                m.next.prev = m.prev

    def unlift(e: _Entry) -> None:
        m = e.match
        if m is not None:
            m.prev.next = m
            if m.next is not None:
                m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    required = sum(1 for op in ops if op.outcome == OK)
    remaining = required
    state = initial
    linearized = 0
    cache: set[tuple[int, str | None]] = set()
    stack: list[tuple[_Entry, str | None]] = []
    best: list[_Entry] = []
    best_done = -1
    explored = 0
    entry = head.next
    result: bool | None = True
    while remaining > 0:
        explored += 1
        if deadline is not None and explored % 4096 == 0 and time.monotonic() > deadline:
            result = None
            break
        # An ok op still to place has its return event in the list, and the
        # scan stops at the first return it meets: it cannot run off the end.
        assert entry is not None, "scan ran past every return event"
        if entry.is_call:
            legal, new_state = step(state, entry.op)
            if legal:
                bits = linearized | (1 << entry.idx)
                memo = (bits, new_state)
                if memo not in cache:
                    cache.add(memo)
                    stack.append((entry, state))
                    state = new_state
                    linearized = bits
                    if entry.op.outcome == OK:
                        remaining -= 1
                    lift(entry)
                    done = required - remaining
                    if done > best_done:
                        best_done = done
                        best = [e for e, _ in stack]
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                result = False
                break
            top, state = stack.pop()
            linearized &= ~(1 << top.idx)
            if top.op.outcome == OK:
                remaining += 1
            unlift(top)
            entry = top.next
    res = KeyResult(key, result, n, unknown, explored, time.monotonic() - started)
    if result is False:
        res.longest_prefix = [e.op for e in best]
        done_ids = {id(op) for op in res.longest_prefix}
        # the ops that were pending right after that prefix: every op not in
        # it that was called before the earliest return still outstanding
        pending = [op for op in ops if id(op) not in done_ids]
        first_ret = min((op.ret for op in pending if op.outcome == OK), default=float("inf"))
        res.stuck = sorted((op for op in pending if op.call <= first_ret), key=lambda op: op.call)
    return res


def check(ops: Iterable[Op], time_limit: float | None = 60.0,
          initial: dict[str, str | None] | None = None) -> Verdict:
    """Check a whole history, key by key. ``time_limit`` bounds the total
    search; a key not decided within it makes the verdict ``None``."""
    started = time.monotonic()
    deadline = None if time_limit is None else started + time_limit
    by_key: dict[str, list[Op]] = {}
    count = 0
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
        count += 1
    results: dict[str, KeyResult] = {}
    for key in sorted(by_key):
        results[key] = check_key(key, by_key[key], (initial or {}).get(key), deadline)
    values = [r.ok for r in results.values()]
    ok: bool | None = True
    if any(v is False for v in values):
        ok = False
    elif any(v is None for v in values):
        ok = None
    return Verdict(ok, results, count, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .history import load_history
    p = argparse.ArgumentParser(prog="python -m raftkv.chaos.checker",
                                description="check a recorded history for linearizability")
    p.add_argument("history", help="JSON-lines history written by the workload")
    p.add_argument("--time-limit", type=float, default=300.0)
    args = p.parse_args(argv)
    ops, _, _ = load_history(args.history)
    verdict = check(ops, args.time_limit)
    print(verdict.explain())
    return {True: 0, False: 1, None: 3}[verdict.ok]


if __name__ == "__main__":
    raise SystemExit(main())
