"""The lab's linearizability stage: a simulated client history, judged as a whole.

Theory of operation: the randomized runs check each read as it is served,
against the writes acknowledged before it began (the simulator's own check).
For the exercises that decide reads, ``check`` then runs a few more seeds
with that per-read check off and records the clients' history instead:
every write with the time it was asked and the time it was acknowledged (or
none: its outcome stays unknown), every read at a checked level with the
time it was asked, the time it was answered and the value it returned. The
history goes to :mod:`raftkv.chaos.checker`, the porcupine-style checker
that judges real clusters' histories: some order of the operations, each at
an instant within its call and its return, must explain every value read.
The first read no such order explains is reported, with the operations it
cannot follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from raftkv.chaos.checker import Verdict, check
from raftkv.chaos.history import OK, UNKNOWN, Op
from raftkv.sim.clients import CHECKED_LEVELS, ClientModel

HISTORY_SEED_BASE = 1000   # history runs use seeds of their own, past the randomized runs'
TIME_LIMIT = 10.0          # seconds of search per history; an undecided one passes


@contextlib.contextmanager
def recorded(ops: list[Op]) -> Iterator[None]:
    """The simulated clients' operations go into ``ops``; reads are not checked one by one."""
    write, applied, serve, check_read = (ClientModel.write, ClientModel._applied, ClientModel._serve,
                                         ClientModel._check)
    writes: dict[int, Op] = {}

    def recorded_write(self, node_id, key, value, label=None):
        rid = write(self, node_id, key, value, label)
        op = Op(len(ops), 0, "set" if value is not None else "remove", key, float(self.cluster.now),
                outcome=UNKNOWN, value=value, node=node_id)
        ops.append(op)
        writes[rid] = op
        return rid

    def recorded_applied(self, node, entries):
        before = dict(self.proposed)
        applied(self, node, entries)
        for rid, (_, index, term) in before.items():
            op = writes.get(rid)
            if op is not None and rid not in self.proposed and self.acked.get(index) == term:
                op.outcome, op.ret = OK, float(self.cluster.now)

    def recorded_serve(self, node, read):
        serve(self, node, read)
        if read.level in CHECKED_LEVELS:
            ops.append(Op(len(ops), 0, "get", read.key, float(read.began), float(self.cluster.now),
                          OK, read.value, node=read.node))

    ClientModel.write = recorded_write          # type: ignore[method-assign]
    ClientModel._applied = recorded_applied     # type: ignore[method-assign]
    ClientModel._serve = recorded_serve         # type: ignore[method-assign]
    ClientModel._check = lambda self, read: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        ClientModel.write, ClientModel._applied, ClientModel._serve, ClientModel._check = (  # type: ignore[method-assign]
            write, applied, serve, check_read)


def judge(ops: list[Op]) -> Verdict:
    return check(ops, time_limit=TIME_LIMIT)


def explain(verdict: Verdict) -> tuple[str, list[str]]:
    """The first read no order explains, and the lines that show why."""
    key = verdict.bad_keys[0]
    result = verdict.keys[key]
    reads = sorted((op for op in result.stuck if op.f == "get"), key=lambda op: op.call)
    first = reads[0] if reads else min(result.stuck, key=lambda op: op.call)
    detail = (f"read of {key!r} on {first.node} asked at t={first.call:.0f}ms answered {first.value!r} at "
              f"t={first.ret:.0f}ms: no order of the writes, each placed between its call and its "
              "acknowledgement, explains it") if first.f == "get" else f"no order explains {first.describe()}"
    return detail, result.explain().splitlines()
