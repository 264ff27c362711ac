"""Replay recorded steps through a fresh core and check it does the same.

Theory of operation
-------------------
A trace file (:mod:`raftkv.node.trace`, written by a node run with
``RAFT_TRACE=FILE`` or by a simulated node) holds, per incarnation of the
node, what its core was built from and every step it took. For each
incarnation the replayer builds a new :class:`~raftkv.raft.node.RaftNode`
from the start record, steps the recorded events at the recorded ``now``,
and compares after every step the effects (their encoded form, in which an
opaque runtime handle is its recorded description), any exception and the
status (``NodeStatus.to_dict()``) with what was recorded. The first
difference in a file ends its replay and is reported with the steps before
it.

The steps of one driver batch are carried out together, as the node did,
by the live node's own :class:`~raftkv.node.executor.EffectExecutor` over a
disk, network and state machine that do nothing but let it narrate; so the
trace prints what ``raftkv sim --trace`` prints: a header per batch, the
node's hclog lines, the messages it sent and what it made durable and
applied, and its state after a batch that changed anything. Several files
(one per node) are merged by the core's clock, which for live nodes on one
machine is the shared monotonic clock.

:func:`replay_document` turns the same batches into the step list of
:mod:`.record`, which the dashboard's replay view shows.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftkv.node.executor import EffectExecutor
from raftkv.node.trace import STATUS_KEYS, TraceError, decode, describe_event, encode, read_records
from raftkv.observability.eventlog import record_to_dict
from raftkv.observability.hclog import render_line
from raftkv.raft import effects as fx
from raftkv.raft.messages import Entry
from raftkv.raft.node import LEADER, RaftNode

from ..scenarios import describe_message

__all__ = ["Divergence", "FileResult", "replay_file", "replay_files", "replay_document", "summary"]

CONTEXT_STEPS = 3  # recorded steps shown before a divergence


@dataclass
class Divergence:
    path: str
    node_id: str
    incarnation: int
    step: int
    event: str
    what: str                      # "effects" | "status" | "error"
    details: list[str]
    context: list[str]

    def report(self) -> str:
        lines = [f"DIVERGENCE in {self.path} (node {self.node_id}, incarnation {self.incarnation}) "
                 f"at step {self.step}: {self.event}: {self.what} differ"]
        if self.context:
            lines.append("  the steps before it:")
            lines.extend(f"    {c}" for c in self.context)
        lines.extend(f"  {d}" for d in self.details)
        return "\n".join(lines)


@dataclass
class FileResult:
    path: str
    node_id: str = ""
    incarnations: int = 0
    steps: int = 0
    divergence: Divergence | None = None


@dataclass
class Batch:
    """The steps a node's driver carried out together, and what they showed."""
    node_id: str
    t: int                                   # the core's clock after the batch, ms
    labels: list[str]
    lines: list[str]                         # trace lines, indented as the simulator's
    logs: list[tuple] = field(default_factory=list)    # (level, logger, message, fields)
    messages: list[str] = field(default_factory=list)  # sends and executor lines, for the dashboard
    state: dict | None = None                # node state after it, when something changed
    start: bool = False
    divergence: Divergence | None = None


# ---------------------------------------------------------------- the executor's surroundings

class _NullStorage:
    def append(self, entries: Sequence[Entry]) -> None: pass
    def set_hard_state(self, term: int, voted_for: str | None) -> None: pass
    def truncate_from(self, index: int) -> None: pass
    def compact_through(self, index: int) -> None: pass
    def restore_snapshot(self, meta, data) -> None: pass
    def sync(self) -> None: pass


class _NullNetwork:
    def send(self, to: str, address: str, message) -> None: pass


class _NullStateMachine:
    def apply(self, entries: Sequence[Entry]) -> list:
        return [None] * len(entries)


class _NarratingHost:
    """The executor's host: collects what a traced run prints."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.role = "Follower"
        self.batch: Batch | None = None

    def _line(self, text: str, message: bool = True) -> None:
        self.batch.lines.append(f"  {self.node_id} {text}")
        if message:
            self.batch.messages.append(f"{self.node_id} {text}")

    def log(self, effect: fx.Log) -> None:
        line = render_line(None, effect.level, effect.logger, effect.message, effect.fields)
        self._line(line.rstrip(), message=False)
        self.batch.logs.append((effect.level, effect.logger, effect.message, effect.fields))

    def sent(self, to: str, message) -> None:
        if not getattr(message, "heartbeat", False):
            self._line(f"-> {to}: {describe_message(message)}")

    def trace(self, text: str) -> None:
        self._line(text)

    def applied(self, entries, results) -> None: pass
    def resolve(self, effect) -> None: pass
    def configuration_changed(self, effect) -> None: pass
    def compacted(self) -> None: pass
    def take_snapshot(self, meta) -> None: pass

    def state_changed(self, effect: fx.StateChanged) -> None:
        self.role = effect.role


def _visible(effect) -> bool:
    return type(effect) is not fx.Log and not (type(effect) is fx.Send
                                               and getattr(effect.message, "heartbeat", False))


def _node_state(raft: RaftNode, status: dict) -> dict:
    """The dashboard's per-node state (as :func:`.record.node_state`)."""
    conf = raft.configuration
    last = status["last_log_index"]
    lo = max(raft.log.first_index, last - 59)
    return {"id": raft.id, "up": True, "role": status["state"], "term": status["term"],
            "commit_index": status["commit_index"], "applied_index": status["applied_index"],
            "last_log_index": last, "last_snapshot_index": status["last_snapshot_index"],
            "leader": status["leader_id"], "member": conf.has(raft.id), "voter": conf.is_voter(raft.id),
            "entries": [[e.index, e.term, e.type.name.lower()] for e in raft.entries(lo, last)]}


def _header(labels: Sequence[str]) -> str:
    """The events of a batch, runs of the same one counted: ``Receive AppendEntries n3->n1 x16``."""
    runs: list[list] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    return ", ".join(label if n == 1 else f"{label} x{n}" for label, n in runs) or "Tick"


def _describe_state(status: dict) -> str:
    snap = f" snapshot={status['last_snapshot_index']}" if status["last_snapshot_index"] else ""
    return (f"{status['id']}: {status['state']:<9} term={status['term']} commit={status['commit_index']} "
            f"applied={status['applied_index']} last={status['last_log_index']}{snap}")


# ---------------------------------------------------------------- comparing

def _effect_text(encoded: Any) -> str:
    try:
        value = decode(encoded)
    except TraceError:
        return repr(encoded)
    return repr(value)


def _effects_diff(recorded: list, replayed: list) -> list[str]:
    for i in range(max(len(recorded), len(replayed))):
        a = recorded[i] if i < len(recorded) else None
        b = replayed[i] if i < len(replayed) else None
        if a != b:
            return [f"effect #{i} of {len(recorded)} recorded / {len(replayed)} replayed:",
                    f"  recorded: {'(none)' if a is None else _effect_text(a)}",
                    f"  replayed: {'(none)' if b is None else _effect_text(b)}"]
    return []


def _status_diff(keys: Sequence[str], recorded: list, replayed: dict) -> list[str]:
    out = []
    for key, value in zip(keys, recorded):
        if replayed.get(key) != value:
            out.append(f"status {key}: recorded {value!r}, replayed {replayed.get(key)!r}")
    if len(recorded) != len(keys):
        out.append(f"status: recorded {len(recorded)} values for {len(keys)} keys")
    return out


# ---------------------------------------------------------------- replaying

def _incarnations(path: str) -> list[tuple[dict, list[dict]]]:
    out: list[tuple[dict, list[dict]]] = []
    for record in read_records(path):
        kind = record.get("k")
        if kind == "start":
            out.append((record, []))
        elif kind == "step":
            if not out:
                raise TraceError(f"{path}: a step before any start record")
            out[-1][1].append(record)
        else:
            raise TraceError(f"{path}: unknown record kind {kind!r}")
    return out


def replay_file(path: str, on_batch: Callable[[Batch], None] | None = None, name: str | None = None) -> FileResult:
    """Replay every incarnation in one file; ``on_batch`` gets each carried-out
    batch. ``name`` is what reports call the file (default: its path)."""
    result = FileResult(name or path)
    for number, (start, steps) in enumerate(_incarnations(path), 1):
        result.node_id = start["id"]
        result.incarnations = number
        divergence = _replay_incarnation(result.path, number, start, steps, result, on_batch)
        if divergence is not None:
            result.divergence = divergence
            break
    return result


def _replay_incarnation(path: str, number: int, start: dict, steps: list[dict], result: FileResult,
                        on_batch: Callable[[Batch], None] | None) -> Divergence | None:
    node_id = start["id"]
    keys = start.get("status_keys") or list(STATUS_KEYS)
    raft = RaftNode(node_id, start["address"], decode(start["config"]), decode(start["state"]),
                    random.Random(start["seed"]), start["now"])
    host = _NarratingHost(node_id)
    executor = EffectExecutor(_NullStorage(), _NullNetwork(), _NullStateMachine(), host,
                              trace=host.trace if on_batch is not None else None)
    context: list[str] = []
    batch_effects: list = []
    batch: Batch | None = None
    first = True

    def carry_out() -> None:
        nonlocal batch, batch_effects
        if batch is None:
            return
        if on_batch is not None:
            host.batch = batch
            ready = executor.prepare(batch_effects)
            executor.send_early(ready, host.role == LEADER)
            executor.persist(ready)
            executor.finish(ready)
            on_batch(batch)
        batch, batch_effects = None, []

    current_batch = None
    for record in steps:
        if record["b"] != current_batch:
            carry_out()
            current_batch = record["b"]
        event = decode(record["ev"])
        label = describe_event(event, node_id)
        error = None
        try:
            effects = raft.start() if event is None else raft.step(event, record["now"])
        except Exception as exc:
            effects, error = [], f"{type(exc).__name__}: {exc}"
        result.steps += 1
        replayed = encode(effects)
        status = raft.status()
        st = status.to_dict()
        details: list[str] = []
        what = ""
        if error != record.get("err"):
            what, details = "error", [f"recorded: {record.get('err')}", f"replayed: {error}"]
        elif replayed != record["fx"]:
            what, details = "effects", _effects_diff(record["fx"], replayed)
        else:
            diff = _status_diff(keys, record["st"], st)
            if diff:
                what, details = "status", diff
        if batch is None:
            batch = Batch(node_id, status.now, [], [], start=first)
            first = False
        batch.t = max(batch.t, record.get("t", status.now))
        if what:
            divergence = Divergence(path, node_id, number, record["n"], label, what, details, context[-CONTEXT_STEPS:])
            batch.divergence = divergence
            batch.labels.append(label)
            batch_effects.extend(effects)
            carry_out()
            return divergence
        context.append(f"step {record['n']}: {label} t={status.now}ms -> "
                       f"{len(effects)} effects, {st['state']} term={st['term']} commit={st['commit_index']}")
        if event is None or effects:
            batch.labels.append(label)
        if any(_visible(e) for e in effects):
            batch.state = {"status": st, "node": _node_state(raft, st)}
        batch_effects.extend(effects)
    carry_out()
    return None


# ---------------------------------------------------------------- several files

def _replay_all(paths: Sequence[str], names: Sequence[str] | None = None
                ) -> tuple[list[FileResult], list[Batch]]:
    results, streams = [], []
    for i, path in enumerate(paths):
        batches: list[Batch] = []
        results.append(replay_file(path, batches.append, names[i] if names else None))
        streams.append(batches)
    merged = list(heapq.merge(*[[(b.t, i, n, b) for n, b in enumerate(s)] for i, s in enumerate(streams)],
                              key=lambda item: item[:3]))
    return results, [item[3] for item in merged]


def replay_files(paths: Sequence[str], out: Callable[[str], None] | None = print) -> list[FileResult]:
    """Replay each file and print their traces merged by time; returns each file's result."""
    results, batches = _replay_all(paths)
    if out is not None:
        t0 = batches[0].t if batches else 0
        for batch in batches:
            if batch.lines or batch.start or batch.divergence:
                out(f"----{{{batch.node_id} {_header(batch.labels)} t={batch.t - t0}ms}}")
                for line in batch.lines:
                    out(line)
                if batch.state is not None:
                    out(f"    {_describe_state(batch.state['status'])}")
            if batch.divergence is not None:
                out(batch.divergence.report())
    return results


def replay_document(paths: Sequence[str], names: Sequence[str] | None = None) -> dict:
    """The replay of these files as :mod:`.record`'s document, for
    the dashboard; ``names`` are what it calls the files (default: their paths)."""
    results, batches = _replay_all(paths, names)
    nodes = sorted({r.node_id for r in results if r.node_id})
    states = {n: {"id": n, "up": False, "role": "Down"} for n in nodes}
    t0 = batches[0].t if batches else 0
    steps, seq = [], 0
    for batch in batches:
        if not (batch.lines or batch.start or batch.divergence):
            continue
        if batch.state is not None:
            states[batch.node_id] = batch.state["node"]
        logs = []
        for level, logger, message, fields in batch.logs:
            seq += 1
            logs.append(record_to_dict(batch.node_id, (seq, (batch.t - t0) / 1000.0, level, logger, message, fields)))
        notes = [batch.divergence.report()] if batch.divergence else []
        steps.append({"index": len(steps), "label": f"{batch.node_id} {_header(batch.labels)}",
                      "t": batch.t - t0, "notes": notes, "logs": logs, "messages": batch.messages,
                      "nodes": [dict(states[n]) for n in nodes]})
    divergences = [r.divergence for r in results if r.divergence]
    return {"scenario": " ".join(r.path for r in results), "nodes": nodes, "passed": not divergences,
            "error": divergences[0].report() if divergences else None, "steps": steps,
            "replayed": {r.path: {"node": r.node_id, "incarnations": r.incarnations, "steps": r.steps,
                                  "divergences": 1 if r.divergence else 0} for r in results}}


def summary(results: Sequence[FileResult]) -> str:
    steps = sum(r.steps for r in results)
    divergences = sum(1 for r in results if r.divergence)
    runs = sum(r.incarnations for r in results)
    return f"replayed {steps} steps, {divergences} divergences ({len(results)} files, {runs} runs)"
