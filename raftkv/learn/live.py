"""The learning page's live source: a running cluster's Raft cores, step by step, as the simulator's frames.

Theory of operation
-------------------
The page at ``/ui/learn`` draws frames (:mod:`raftkv.learn.world` makes them
for the simulator). For a live cluster the frames are made in two places.

**On every node, the step tap** (:class:`StepTap`). The runtime's driver is
the only caller of the core's ``step`` (:mod:`raftkv.node.runtime`); right
after each step, where it hands the step to a ``RAFT_TRACE`` recorder, it asks
``tap.listening`` and, only when someone listens, calls :meth:`StepTap.step`.
Unwatched, the tap costs that one attribute check per step. Watched, a step
becomes a *step record*, plain JSON::

    {"node": "n2", "t": 1718000000123.4, "seq": 17,
     "event": event_view(event), "sends": [{"to": "n1", **message_view(msg)}],
     "logs": ["[DEBUG] raft: ...hclog line..."], "narration": narrate(...),
     "view": node_view(status after the step, log shape, timer in wall ms)}

``t`` is the wall clock (``time.time()`` in ms) when the step was done. The
node's log is kept as a :class:`~raftkv.learn.picture.LogShape`, read off the
core when the first subscriber arrives and from then on followed effect by
effect (:meth:`LogShape.apply`); it is dropped when the last one leaves. The
view's election timer is ``[reset, runs out]`` in wall ms: the core counts in
its own monotonic milliseconds, converted with the wall-minus-monotonic offset
at the time of the record. A Tick that did nothing makes no record; every
Receive does, so that the merge can see each message arrive.

Each subscriber (:class:`Subscriber`) has a bounded queue (``CAPACITY``
records). The node never waits for one: a subscriber that falls behind loses
its oldest records, and the next :meth:`Subscriber.take` begins with
``{"node", "skipped": N}`` saying how many. Building a record can never stop
the node: an exception there is logged once and the step goes on unrecorded.

**On the node serving the page, the merge** (:class:`Merge`). It reads the
records of every member (its own tap directly, the others' over HTTP,
:mod:`raftkv.http.pages.learn_live`) and makes the frames:

- *time order.* A record is held ``HOLD_MS`` (300 ms) before it becomes a
  frame, so that records of the same moment from other members, which reach
  the serving node later, are sorted in before it goes out: frames are in
  ``(t, node, seq)`` order. A record that arrives later than that still
  becomes a frame at once; frame times never go backwards (``t`` is the
  largest record time so far).
- *pairing.* A Receive step on node B from A of type T is the receipt of the
  oldest message A sent B of type T that is not yet received (FIFO per
  ``(from, to, type)``, as the transport's connections deliver), preferring
  the oldest whose fields are identical to what B received; identical
  messages (a run of heartbeats) are interchangeable, so when one of them is
  lost the next may be the one drawn lost. Only a send at most ``SKEW_MS``
  (100 ms, how far apart the members' clocks may be) after the receipt
  qualifies, so the receipts of sends made before the sender's stream opened
  pair with nothing. Messages are numbered as their senders' frames go out;
  the sender's frame lists the id in ``sent`` and puts the message in
  ``flight`` with its ``sent`` and, when the receipt is already known (the
  usual case thanks to the hold), its ``arrive`` time; the receiver's frame
  names it in ``delivered`` and it leaves ``flight``. A receipt seen before
  its send (the sender's stream lagging) waits for it, and is put after the
  send if the receiver's clock says otherwise; if the receipt's frame went out
  first, the send's frame shows the message once, already arrived. A message
  not received within ``LOST_MS`` (5 s) of its sending leaves ``flight``:
  lost. A message sent to a member whose stream is down is listed in the
  frame's ``cut`` instead, as the simulator lists messages a cut link
  swallows.
- *heartbeats.* ``Merge(heartbeats=False)`` leaves out heartbeats
  (``AppendEntries`` with ``heartbeat`` true and their responses) unless they
  carry a read round (``read_seq`` > 0): they get no id and no frame of their
  own, and a step whose only news was a heartbeat makes no frame, but its
  view still updates the node's picture in the next frame.
- *frames.* A step makes a frame when it sent, received or logged something,
  or its node's view changed other than its timer. A frame has the
  simulator's shape: ``{"i", "t", "node", "event", "label", "narration",
  "logs", "sent", "delivered", "cut", "nodes", "flight", "clients"}`` where
  ``nodes`` is every member's latest view (``down_view`` for one not heard
  from yet, or whose stream is down) and ``clients`` is empty.
- *bounds.* The merge holds at most ``MERGE_CAPACITY`` records; past that the
  oldest go without a frame and :meth:`Merge.take_skipped` counts them.

Costs (2 cores shared with other work, so upper bounds): unwatched, one
attribute check per step (~30 ns); watched, ~90-150 us of CPU per step, a
third of it ``RaftNode.status()`` (which builds every peer's progress on a
leader), ~3-5 times the core's own step. A 3-node cluster at rest makes ~50
frames/s with the default 1 s heartbeat timeout (heartbeats every 100 ms),
~145/s with 300 ms; under ``scripts/pump.sh``-like load (8 writers) 430-700
frames/s of ~2.7 KB. Seeding a log shape reads the whole in-memory log once.

The serving node's side (the merge, and the parser of the members' event
streams) is :mod:`raftkv.learn.merge`. Nothing here does IO or imports aiohttp.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from raftkv.observability import hclog
from raftkv.observability.hclog import render_line
from raftkv.raft import effects as fx
from raftkv.raft import events as ev

from .narrate import narrate, narrate_fsync
from .picture import LogShape, down_view, event_view, message_view, node_view

# the effects the executor makes durable before it sends what must wait for them
_PERSISTED = (fx.PersistHardState, fx.AppendToLog, fx.TruncateLog, fx.CompactLog, fx.RestoreSnapshot)

__all__ = ["CAPACITY", "StepTap", "Subscriber"]

CAPACITY = 5000          # records a subscriber's queue holds

learn_log = hclog.get_logger("learn")


# --- the node's side -------------------------------------------------------------------

class Subscriber:
    """One listener's bounded queue of step records."""

    __slots__ = ("node_id", "queue", "skipped", "wake")

    def __init__(self, node_id: str, capacity: int, wake: Callable[[], None] | None) -> None:
        self.node_id = node_id
        self.queue: collections.deque = collections.deque(maxlen=capacity)
        self.skipped = 0
        self.wake = wake

    def push(self, record: dict) -> None:
        queue = self.queue
        if len(queue) == queue.maxlen:
            self.skipped += 1  # the append below pushes the oldest out
        queue.append(record)
        if self.wake is not None:
            self.wake()

    def take(self) -> list[dict]:
        """Every record queued so far, oldest first; after ``{"node",
        "skipped": N}`` if N records were lost before them."""
        out: list[dict] = []
        if self.skipped:
            out.append({"node": self.node_id, "skipped": self.skipped})
            self.skipped = 0
        out.extend(self.queue)
        self.queue.clear()
        return out


class StepTap:
    """A node's steps as records, for whoever subscribes (see the module docstring).

    ``core`` returns the node's :class:`~raftkv.raft.node.RaftNode` (None
    before it is built); ``wall`` and ``clock`` are the wall clock and the
    clock the core's milliseconds count (both in seconds): the runtime's
    core counts ``time.monotonic()``; a simulated one passes its own."""

    def __init__(self, node_id: str, core: Callable[[], object], *, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, capacity: int = CAPACITY) -> None:
        self.node_id = node_id
        self.listening = False  # the runtime checks this one attribute per step
        self.capacity = capacity
        self.seq = 0
        self._core = core
        self._wall = wall
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        self._log: LogShape | None = None
        self._log_view: dict | None = None
        self._view: dict | None = None
        self._timer = (0, 0)        # (election deadline, when it was set), core ms
        self._failures = 0
        # after a step that appended to the log: its last index and the
        # messages that leave only once the write is on disk (see persisted)
        self._unsynced: tuple[int, list[dict]] | None = None

    # -- subscribers

    def subscribe(self, wake: Callable[[], None] | None = None, capacity: int | None = None) -> Subscriber:
        """A new subscriber; ``wake`` is called after each record is queued."""
        if not self._subscribers:
            self._seed()
        sub = Subscriber(self.node_id, capacity or self.capacity, wake)
        self._subscribers.append(sub)
        self.listening = True
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
        if not self._subscribers:
            self.listening = False
            self._log = self._log_view = self._view = None
            self._unsynced = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def hello(self) -> dict:
        """What a new subscriber hears first: the node and its view now."""
        return {"id": self.node_id, "node": self.node_id, "t": round(self._wall() * 1000, 1), "seq": self.seq,
                "view": self._view if self._view is not None else down_view(self.node_id)}

    def _seed(self) -> None:
        core = self._core()
        if core is None:
            self._log, self._view = LogShape(), None
        else:
            self._log = LogShape.of(core.log)
            self._view = None
        self._log_view = self._log.view()
        if core is not None:
            self._view = self._node_view(core.status(), self._wall() * 1000)

    def _node_view(self, status, wall_ms: float) -> dict:
        deadline = status.election_deadline
        if deadline != self._timer[0]:
            self._timer = (deadline, status.now)
        view = node_view(status, self._log_view, timer_start=self._timer[1])
        timer = view["timer"]
        if timer is not None:
            offset = wall_ms - self._clock() * 1000
            view["timer"] = [round(timer[0] + offset, 1), round(timer[1] + offset, 1)]
        return view

    # -- the runtime's hook

    def step(self, event, effects: list) -> None:
        """One step of the core (``event`` None: ``RaftNode.start()``) and
        the effects it returned; call only while :attr:`listening`."""
        if not effects and type(event) is not ev.Receive and event is not None or not self._subscribers:
            return  # a timer that found nothing to do (or nobody listens after all)
        try:
            record = self._record(event, effects)
        except Exception as exc:  # never let the picture stop the node
            self._failures += 1
            if self._failures == 1:
                learn_log.error("failed to describe a step for the learning page; steps it cannot describe "
                                "are left out", step=type(event).__name__, error=f"{type(exc).__name__}: {exc}")
            return
        for sub in self._subscribers:
            sub.push(record)

    def persisted(self) -> None:
        """The runtime made the last step's writes durable: if that step
        appended to the log, a record of the fsync, carrying the messages
        that waited for it. Call only while :attr:`listening`."""
        unsynced, self._unsynced = self._unsynced, None
        if unsynced is None or not self._subscribers or self._view is None:
            return
        through, held = unsynced
        self.seq += 1
        view = {**self._view, "durable": self._view["last"]}
        record = {"node": self.node_id, "t": round(self._wall() * 1000, 1), "seq": self.seq,
                  "event": {"type": "Fsync", "through": through}, "sends": held, "logs": [],
                  "narration": narrate_fsync(self.node_id, view["role"] == "Leader", through), "view": view}
        self._view = view
        for sub in self._subscribers:
            sub.push(record)

    def _record(self, event, effects: list) -> dict:
        core = self._core()
        if self._log.apply(effects) or self._log_view is None:
            self._log_view = self._log.view()
        wall_ms = self._wall() * 1000
        before = self._view
        after = self._node_view(core.status(), wall_ms)
        appended = [e.entries[0].index for e in effects if type(e) is fx.AppendToLog and e.entries]
        # as the executor's send_early: a leader's AppendEntries leave before
        # its own append is durable when that is all it writes; everything
        # else leaves after the write
        leader_append = after["role"] == "Leader" and all(
            type(e) in (fx.AppendToLog, fx.CompactLog) for e in effects if type(e) in _PERSISTED)
        sends: list[dict] = []
        held: list[dict] = []
        logs: list[str] = []
        for effect in effects:
            t = type(effect)
            if t is fx.Send:
                sent = {"to": effect.to, **message_view(effect.message)}
                early = not appended or (leader_append and sent["type"] == "AppendEntries")
                (sends if early else held).append(sent)
            elif t is fx.Log:
                logs.append(render_line(None, effect.level, effect.logger, effect.message, effect.fields).rstrip())
        if appended:
            durable = min(appended) - 1
            if before is not None and "durable" in before:
                durable = min(durable, before["durable"])
            after = {**after, "durable": durable}
            self._unsynced = (after["last"], held)
        self.seq += 1
        record = {"node": self.node_id, "t": round(wall_ms, 1), "seq": self.seq, "event": event_view(event),
                  "sends": sends, "logs": logs,
                  "narration": narrate(self.node_id, event, effects, before, after, core=core), "view": after}
        self._view = after
        return record
