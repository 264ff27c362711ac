"""Record a scripted scenario as data, step by step, for the dashboard's replay.

Theory of operation: the same hooks that print ``raftkv sim --trace``
(``SimCluster.trace`` and ``after_step``) feed a :class:`Recorder` instead of
a printer. Each traced event (``Propose n1 user=kj``, ``Deliver n2->n1 ...``,
``Crash n1``) becomes a step holding its label, the simulated time, the notes
that preceded it, the hclog records it caused, the non-heartbeat messages it
sent interleaved with what its node's executor made durable and applied
(``n1 append 3..5 (fsync)``, ``n1 apply 1..5``) in the order they happened,
and every node's state after it: role, term, commit, applied, last
index, snapshot index, suffrage and the tail of its log as ``[index, term,
type]``. Steps that changed nothing visible (a quiet heartbeat) are left out.
Scenarios are read from their files by the same player the tests and
``--trace`` use (:func:`raftkv.sim.scenarios.play`). The result is plain
JSON: ``raftkv sim --scenario NAME --json-trace FILE`` writes it, and
``/ui/replay?scenario=NAME`` serves it.
"""

from __future__ import annotations

from typing import Any

from raftkv.observability.eventlog import record_to_dict

from ..invariants import Violation
from ..scenarios import Script, describe_message, play, scenario_names, scenario_path

__all__ = ["Recorder", "record_scenario", "scenario_names"]

LOG_TAIL = 60  # entries of each node's log kept per step


def node_state(cluster, node) -> dict:
    if not node.alive or node.raft is None:
        return {"id": node.id, "up": False, "role": "Down"}
    r = node.raft
    conf = r.configuration
    last = r.log.last_index
    lo = max(r.log.first_index, last - LOG_TAIL + 1)
    return {
        "id": node.id, "up": True, "role": r.role, "term": r.current_term,
        "commit_index": r.commit_index, "applied_index": node.applied_index, "last_log_index": last,
        "last_snapshot_index": r.snapshot.index, "leader": r.leader_id,
        "member": conf.has(node.id), "voter": conf.is_voter(node.id),
        "entries": [[e.index, e.term, e.type.name.lower()] for e in r.log.slice(lo, last)],
    }


class Recorder:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.cluster = script.cluster
        self.steps: list[dict] = []
        self._notes: list[str] = []
        self._current: dict | None = None
        self._last_states: list | None = None
        self._seq = 0
        self._printer = self.cluster.trace
        self.cluster.trace = self._trace
        self.cluster.after_step.append(self._after)

    def note(self, line: str) -> None:
        if line.startswith("==== "):
            self._notes.append(line[5:])

    def _states(self) -> list[dict]:
        return [node_state(self.cluster, n) for n in self.cluster.nodes.values()]

    def _begin(self, label: str) -> dict:
        self._close()
        self._current = {"label": label, "t": self.cluster.now, "notes": self._notes, "logs": [],
                         "messages": []}
        self._notes = []
        return self._current

    def _close(self) -> None:
        """Keep the open step if it shows anything, with the states as they are now."""
        step, self._current = self._current, None
        if step is None:
            return
        states = self._states()
        changed = states != self._last_states
        if step["logs"] or step["messages"] or step["notes"] or changed:
            step["nodes"] = states
            step["index"] = len(self.steps)
            self.steps.append(step)
            self._last_states = states

    def _trace(self, kind: str, payload: Any) -> None:
        if self._printer is not None:
            self._printer(kind, payload)
        if kind == "event":
            self._begin(payload)
        elif kind == "log":
            node_id, effect = payload
            step = self._current or self._begin(f"{node_id}")
            self._seq += 1
            rec = record_to_dict(node_id, (self._seq, self.cluster.now / 1000.0, effect.level,
                                           effect.logger, effect.message, effect.fields))
            step["logs"].append(rec)
        elif kind == "send":
            node_id, to, msg = payload
            if not getattr(msg, "heartbeat", False):
                step = self._current or self._begin(f"Step {node_id}")
                step["messages"].append(f"{node_id} -> {to}: {describe_message(msg)}")
        elif kind == "executor":
            node_id, text = payload
            step = self._current or self._begin(f"Step {node_id}")
            step["messages"].append(f"{node_id} {text}")

    def _after(self, node, effects) -> None:
        step = self._current
        if step is not None:
            self._close()
        elif self._states() != self._last_states:
            self._begin(f"Step {node.id}")
            self._close()

    def finish(self) -> None:
        self._close()
        if self._notes:
            self._begin("end")
            self._close()


def record_scenario(name: str) -> dict:
    """Run one scenario and return its recorded steps (and whether it passed)."""
    recorders: list[Recorder] = []

    def out(line: str) -> None:
        if recorders:
            recorders[0].note(line)
    error = None
    try:
        play(scenario_path(name), out, on_script=lambda script: recorders.append(Recorder(script)))
    except Violation as exc:
        error = str(exc)
    recorder = recorders[0]
    recorder.finish()
    return {"scenario": name, "nodes": list(recorder.cluster.nodes), "passed": error is None, "error": error,
            "steps": recorder.steps}
