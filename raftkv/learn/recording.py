"""A simulated run made elsewhere (a randomized fuzz run, a scripted
scenario), drawn as the learning page's frames and opened there read-only.

Theory of operation: the learning page's simulator (:mod:`raftkv.learn.world`)
draws a cluster it builds itself. A run the lab grades is built by
:func:`raftkv.sim.fuzz.run_once` or a scenario, with faults the page cannot
ask for. :func:`recording` watches every :class:`SimCluster` built meanwhile
with a :class:`Recorder`, which makes the same frames the page's simulator
makes (same views, narration, messages in flight), plus a frame for each
crash the run injects. A run can be long, so only its last ``keep`` frames
are kept: what leads up to the end, which is what a failure needs.

A step that raises (an invariant broken inside it) still gets its frame,
drawn from what the node had done so far; :meth:`Recorder.finish` marks the
last frame with what broke. Sentences given to :meth:`Recorder.note` (the
lab's calls of a learner's function) join the narration of the next frame.
The result, a :class:`Recording`, answers the page's reads as a
:class:`~raftkv.learn.world.World` does and refuses its actions: a recorded
run is replayed, not steered.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections import deque
from collections.abc import Iterator

from raftkv.sim.cluster import SimCluster

from .frames import Frames
from .world import ActionError, Spec, _Run

__all__ = ["KEEP", "Recorder", "Recording", "recording"]

KEEP = 3000   # frames kept from the end of a run: about 3 MB compressed with 5 servers


class _Window:
    """The newest ``keep`` frames of a run, compressed; its length counts all
    frames made, so a frame's ``i`` is its place in the whole run."""

    def __init__(self, keep: int) -> None:
        self.blobs: deque[bytes] = deque(maxlen=keep)
        self.made = 0

    def __len__(self) -> int:
        return self.made

    def append(self, frame: dict) -> None:
        self.blobs.append(zlib.compress(json.dumps(frame, separators=(",", ":")).encode(), 1))
        self.made += 1

    def bind(self, start: int, first_too: bool = False) -> None:
        """A recording is never acted on, so no frame needs to stay joined to the next."""


class Recorder(_Run):
    """Frames of ``cluster``, a SimCluster built by someone else, from its
    construction on."""

    def __init__(self, cluster: SimCluster, keep: int = KEEP) -> None:
        nodes = tuple(cluster.nodes)
        self.spec = Spec(nodes=nodes, voters=nodes, seed=cluster.seed, config=cluster.config)
        self.frames = _Window(keep)   # type: ignore[assignment]
        self.notes: list[dict] = []
        self._watch(cluster)
        self._effects: list = []
        step, crash = cluster.step, cluster.crash
        cluster.before_persist.append(self._seen)
        cluster.step_observers.append(self._started)

        def stepping(node_id: str, event, label: str | None = None) -> list:
            node = cluster.nodes[node_id]
            if not node.alive:
                return step(node_id, event, label)
            before = self.view(node)
            self.stepping, self._effects = (node, event, before), []
            try:
                effects = step(node_id, event, label)
            except Exception:
                # the step broke something: draw what it had done when it stopped
                self.stepping, self._fsync_through = None, None
                after = self._views[node_id] = self.view(node, True)
                self._step_frame(node, event, self._effects, before, after)
                raise
            finally:
                self.stepping = None
            if node.alive:
                self.stepped(node, event, effects, before)
            return effects

        def crashing(node_id: str) -> None:
            node = cluster.nodes[node_id]
            was_alive = node.alive
            crash(node_id)
            if was_alive:
                self._views[node_id] = self._down(node)
                self._frame(node_id, {"type": "Action", "at": len(self.frames), "verb": "crash", "node": node_id},
                            f"{node_id} crashes", [_said(
                                f"The run crashes {node_id}: it loses what it held in memory (its commit index, "
                                "its state machine, the messages it was about to send); its term, its vote and "
                                "its log are on disk.", "Figure 2")], [])

        cluster.step = stepping   # type: ignore[method-assign]
        cluster.crash = crashing   # type: ignore[method-assign]

    def _seen(self, node, ready) -> None:
        if self.stepping is not None and self.stepping[0] is node:
            self._effects = list(ready.effects)

    def _started(self, node, event, effects) -> None:
        if event is None:   # a start; steps are drawn by the wrapped step
            self.stepped(node, None, effects, None)

    def note(self, sentence: dict) -> None:
        self.notes.append(sentence)

    def _frame(self, node_id, event: dict, label: str, sentences: list[dict], logs: list[str],
               mid_step: bool = False) -> None:
        if self.notes:
            sentences, self.notes = [*sentences, *self.notes], []
        super()._frame(node_id, event, label, sentences, logs, mid_step)

    def finish(self, broke: dict | None) -> tuple[Frames, int]:
        """The kept frames, numbered from 0, the last one marked with
        ``broke``; and how many frames before them were left out."""
        window: _Window = self.frames   # type: ignore[assignment]
        if self.notes:   # calls after the last drawn step belong to the break
            self._frame(None, {"type": "Action", "at": len(window), "verb": "check"}, "the check after the run",
                        [], [])
        frames = Frames()
        kept = list(window.blobs)
        for k, blob in enumerate(kept):
            frame = json.loads(zlib.decompress(blob))
            frame["i"] = k
            frame.pop("mid_step", None)
            if broke is not None and k == len(kept) - 1:
                frame["broke"] = broke
                frame["label"] = f"broke {broke['invariant']}: {frame['label']}"
            frames.append(frame)
        return frames, window.made - len(kept)


def _said(text: str, paper: str | None) -> dict:
    return {"text": text, "paper": paper, "source": None, "function": None}


@contextlib.contextmanager
def recording(into: list[Recorder], keep: int = KEEP) -> Iterator[None]:
    """Every SimCluster built meanwhile is drawn by a Recorder added to ``into``."""
    init = SimCluster.__init__

    def watched(cluster, *args, **kwargs) -> None:
        init(cluster, *args, **kwargs)
        if type(cluster) is SimCluster:   # the page's own simulator draws itself
            into.append(Recorder(cluster, keep))

    SimCluster.__init__ = watched   # type: ignore[method-assign]
    try:
        yield
    finally:
        SimCluster.__init__ = init   # type: ignore[method-assign]


class Recording:
    """A recorded run, opened in the learning page as a world that cannot be
    steered. ``about`` says what it is (shown by the page)."""

    def __init__(self, frames: Frames, spec: Spec, about: dict) -> None:
        self.spec = spec
        self.frames_kept = frames
        self.about = about

    def frames(self, start: int, count: int) -> list[dict]:
        return self.frames_kept[start:start + count]

    def frames_json(self, start: int, count: int) -> str:
        return self.frames_kept.json(start, start + count)

    def summary(self) -> dict:
        count = len(self.frames_kept)
        ended = self.about.get("ended", "the recorded run ends here")
        return {"nodes": list(self.spec.nodes), "voters": list(self.spec.voters), "seed": self.spec.seed,
                "branch": 0, "branches": [{"id": 0, "parent": None, "forked_at": 0, "frames": count,
                                           "actions": [], "ended": ended}],
                "frames": count, "ended": ended, "heartbeat_ms": self.spec.config.heartbeat_interval,
                "recording": self.about}

    def act(self, at: int, verb: str, **_) -> tuple[bool, int]:
        raise ActionError("this is a recorded run: it replays what happened and cannot be steered; "
                          "start a new simulation to act")

    def switch(self, branch_id: int) -> None:
        if branch_id != 0:
            raise ActionError(f"no branch {branch_id}")
