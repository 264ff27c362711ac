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

Nothing here does IO or imports aiohttp; :class:`SseParser` splits the bytes
of a server-sent-events stream for the HTTP side.
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from collections.abc import Callable, Iterable

from raftkv.observability import hclog
from raftkv.observability.hclog import render_line
from raftkv.raft import effects as fx
from raftkv.raft import events as ev

from .narrate import narrate, narrate_fsync
from .picture import LogShape, down_view, event_view, message_view, node_view, step_label

# the effects the executor makes durable before it sends what must wait for them
_PERSISTED = (fx.PersistHardState, fx.AppendToLog, fx.TruncateLog, fx.CompactLog, fx.RestoreSnapshot)

__all__ = ["CAPACITY", "HOLD_MS", "LOST_MS", "MERGE_CAPACITY", "SKEW_MS", "Merge", "SseParser", "StepTap", "Subscriber",
           "is_heartbeat"]

CAPACITY = 5000          # records a subscriber's queue holds
HOLD_MS = 300            # how long the merge holds a record before its frame goes out
LOST_MS = 5000           # a message not received this long after its sending is lost
MERGE_CAPACITY = 20_000  # records the merge holds at most
SKEW_MS = 100            # how far apart the members' wall clocks may be

learn_log = hclog.get_logger("learn")


def is_heartbeat(message: dict) -> bool:
    """A message view of a heartbeat or its answer that carries no read round."""
    return (message.get("heartbeat") is True and not message.get("read_seq")
            and message.get("type") in ("AppendEntries", "AppendEntriesResponse"))


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


# --- the serving node's side -------------------------------------------------------------

class _Msg:
    """A message the merge knows was sent."""

    __slots__ = ("arrive", "dst", "emitted", "id", "receipt_emitted", "src", "t", "view")

    def __init__(self, src: str, dst: str, t: float, view: dict) -> None:
        self.id: int | None = None     # given when its sender's frame goes out
        self.src, self.dst, self.t, self.view = src, dst, t, view
        self.arrive: float | None = None
        self.emitted = False           # its sender's frame went out
        self.receipt_emitted = False   # its receiver's frame went out (before the sender's: a late send)

    def flight_entry(self) -> dict:
        return {"id": self.id, "from": self.src, "to": self.dst, "sent": self.t, "arrive": self.arrive, **self.view}


class _Item:
    """A record the merge holds until its frame goes out."""

    __slots__ = ("delivered", "emitted", "hidden", "key", "quiet", "record", "sends")

    def __init__(self, record: dict) -> None:
        self.record = record
        self.key = (record["t"], record["node"], record["seq"])
        self.sends: list[_Msg] = []
        self.hidden = 0            # heartbeats it sent that the merge leaves out
        self.quiet = False         # a heartbeat received that the merge leaves out
        self.delivered: _Msg | None = None
        self.emitted = False


def _take(queue: collections.deque, view: dict, view_of, possible=None) -> object | None:
    """The oldest in ``queue`` whose message equals ``view``, else the oldest
    (of those that are ``possible``, a prefix of the queue)."""
    for i, candidate in enumerate(queue):
        if possible is not None and not possible(candidate):
            break
        if view_of(candidate) == view:
            del queue[i]
            return candidate
    return queue.popleft() if queue else None


def _without_timer(view: dict | None) -> dict | None:
    if view is None or "timer" not in view:
        return view
    return {k: v for k, v in view.items() if k != "timer"}


class Merge:
    """Every member's step records, merged into the simulator's frames (see
    the module docstring). Feed it with :meth:`hello`, :meth:`add`,
    :meth:`member_up` and :meth:`member_down`; take frames with :meth:`frames`."""

    def __init__(self, members: Iterable[str], *, heartbeats: bool = True, hold_ms: float = HOLD_MS,
                 lost_ms: float = LOST_MS, capacity: int = MERGE_CAPACITY, skew_ms: float = SKEW_MS) -> None:
        self.members = list(members)
        self.heartbeats = heartbeats
        self.hold_ms = hold_ms
        self.skew_ms = skew_ms
        self.lost_ms = lost_ms
        self.capacity = capacity
        self.views: dict[str, dict] = {}
        self.down: dict[str, str] = {}          # member -> why its stream is down
        self.flight: dict[int, dict] = {}       # message id -> flight entry, for sends that went out
        self._flying: dict[int, _Msg] = {}
        self._buffer: list[_Item] = []
        self._pending: dict[tuple, collections.deque] = {}   # (from, to, type) -> sends not yet received
        self._early: dict[tuple, collections.deque] = {}     # (from, to, type) -> receipts before their send
        self._ids = itertools.count(1)
        self._i = 0
        self._last_t = -math.inf
        self._skipped: dict[str, int] = {}
        self._greeted: list[str] = []           # members whose stream opened since the last frames()
        self.records = 0

    # -- input

    def set_members(self, members: Iterable[str]) -> None:
        self.members = list(members)

    def hello(self, node_id: str, view: dict | None) -> None:
        """A member's stream (re)opened, with its view at that moment."""
        self.down.pop(node_id, None)
        if view is not None and view.get("up", True):
            self.views[node_id] = view
            # a frame of its own: a quiet cluster (heartbeats hidden) makes no
            # other, and the page would have nothing to draw
            self._greeted.append(node_id)

    def member_up(self, node_id: str) -> None:
        self.down.pop(node_id, None)

    def member_down(self, node_id: str, why: str) -> None:
        self.down[node_id] = why
        self.views.pop(node_id, None)

    def add(self, record: dict) -> None:
        """A member's step record, or its ``{"node", "skipped": N}``."""
        if "skipped" in record:
            node = record.get("node", "?")
            self._skipped[node] = self._skipped.get(node, 0) + record["skipped"]
            return
        self.records += 1
        item = _Item(record)
        node = record["node"]
        for send in record["sends"]:
            view = {k: v for k, v in send.items() if k != "to"}
            if not self.heartbeats and is_heartbeat(view):
                item.hidden += 1
                continue
            msg = _Msg(node, send["to"], record["t"], view)
            item.sends.append(msg)
            key = (node, msg.dst, view["type"])
            early = self._early.get(key)
            if early:
                # receipts older than this send (beyond the clocks' skew) were of sends never seen
                while early and early[0].key[0] < msg.t - self.skew_ms:
                    early.popleft()
            receipt = _take(early, view, lambda it: it.record["event"]["message"]) if early else None
            if receipt is not None:
                self._pair(msg, receipt)
            else:
                self._pending.setdefault(key, collections.deque()).append(msg)
        event = record["event"]
        if event["type"] == "Receive":
            message = event["message"]
            if not self.heartbeats and is_heartbeat(message):
                item.quiet = True
            else:
                key = (event["from"], node, message["type"])
                pending = self._pending.get(key)
                msg = None
                if pending and pending[0].t <= item.key[0] + self.skew_ms:
                    msg = _take(pending, message, lambda m: m.view,
                                lambda m: m.t <= item.key[0] + self.skew_ms)
                if msg is not None:
                    self._pair(msg, item)
                else:
                    self._early.setdefault(key, collections.deque()).append(item)
        self._buffer.append(item)
        if len(self._buffer) > self.capacity:
            self._buffer.sort(key=lambda it: it.key)
            extra = len(self._buffer) - self.capacity
            for old in self._buffer[:extra]:
                old.emitted = True
                self._skipped[old.record["node"]] = self._skipped.get(old.record["node"], 0) + 1
                for msg in old.sends:
                    msg.emitted = True  # never shown: never in flight
            del self._buffer[:extra]

    def _pair(self, msg: _Msg, receipt: _Item) -> None:
        msg.arrive = receipt.record["t"]
        receipt.delivered = msg
        if receipt.emitted:
            msg.receipt_emitted = True  # the send came too late: it shows as sent and received at once
        elif receipt.key[0] <= msg.t:
            # the receiver's clock is behind the sender's: the receipt still comes after the send
            receipt.key = (msg.t + 0.001, *receipt.key[1:])
        if msg.emitted and msg.id in self.flight:
            # a frame that went out may still hold the old entry: replace it, never change it
            self.flight[msg.id] = {**self.flight[msg.id], "arrive": msg.arrive}

    # -- output

    def take_skipped(self) -> dict[str, int]:
        """Records lost per member since last asked (slow subscriber, or the merge's bound)."""
        skipped, self._skipped = self._skipped, {}
        return skipped

    def frames(self, now_ms: float) -> list[dict]:
        """The frames of every record held at least ``hold_ms`` by ``now_ms``
        (the serving node's wall clock, in ms); ``math.inf`` takes them all."""
        cutoff = now_ms - self.hold_ms
        buffer = self._buffer
        buffer.sort(key=lambda it: it.key)
        ready = 0
        while ready < len(buffer) and buffer[ready].key[0] <= cutoff:
            ready += 1
        items, self._buffer = buffer[:ready], buffer[ready:]
        # stamped no later than the first step going out with them
        at = min(items[0].key[0], cutoff) if items else cutoff
        out = [self._greeting(node, at) for node in self._greeted if node in self.views]
        self._greeted = []
        for item in items:
            frame = self._emit(item)
            if frame is not None:
                out.append(frame)
        if now_ms != math.inf:
            self._forget(now_ms - self.hold_ms - self.lost_ms)
        return out

    def _emit(self, item: _Item) -> dict | None:
        item.emitted = True
        rec = item.record
        node = rec["node"]
        t = max(rec["t"], self._last_t)
        self._last_t = t
        lost = [k for k, m in self._flying.items() if m.t < t - self.lost_ms]
        for message_id in lost:
            self.flight.pop(message_id, None)
            self._unpend(self._flying.pop(message_id))
        before = self.views.get(node)
        after = rec["view"]
        if node not in self.down:
            self.views[node] = after
        sent: list[int] = []
        cut: list[dict] = []
        gone: list[int] = []
        for msg in item.sends:
            msg.emitted = True
            msg.id = next(self._ids)
            if msg.arrive is None and msg.dst in self.down:
                self._unpend(msg)
                cut.append({"id": msg.id, "from": msg.src, "to": msg.dst, **msg.view})
                continue
            self.flight[msg.id] = msg.flight_entry()
            self._flying[msg.id] = msg
            sent.append(msg.id)
            if msg.receipt_emitted:
                gone.append(msg.id)
        delivered = None
        msg = item.delivered
        if msg is not None:
            if msg.emitted:
                delivered = msg.id
                self.flight.pop(msg.id, None)
                self._flying.pop(msg.id, None)
            else:
                msg.receipt_emitted = True
        event = rec["event"]
        filtered = item.quiet or item.hidden
        worth = (sent or cut or delivered is not None or rec["logs"]
                 or (event["type"] == "Receive" and not item.quiet)
                 or (rec["narration"] and not filtered)
                 or _without_timer(before) != _without_timer(after))
        frame = None
        if worth:
            frame = {"i": self._i, "t": t, "node": node, "event": event, "label": step_label(node, event),
                     "narration": rec["narration"], "logs": rec["logs"], "sent": sent, "delivered": delivered,
                     "cut": cut, "nodes": self.nodes(), "flight": [self.flight[k] for k in sorted(self.flight)],
                     "clients": []}
            self._i += 1
        for message_id in gone:   # a late send, shown once with its receipt
            self.flight.pop(message_id, None)
            self._flying.pop(message_id, None)
        return frame

    def _greeting(self, node: str, at: float) -> dict:
        view = self.views[node]
        t = max(self._last_t, at if math.isfinite(at) else self._last_t, 0.0)
        self._last_t = t
        role = view.get("role", "").lower()
        sentence = {"text": f"Now watching {node}: a {role} in term {view.get('term')}, its log up to "
                            f"{view.get('last')}.", "paper": "Figure 2", "source": None, "function": None}
        frame = {"i": self._i, "t": t, "node": node, "event": {"type": "Hello"}, "label": f"watching {node}",
                 "narration": [sentence], "logs": [], "sent": [], "delivered": None, "cut": [],
                 "nodes": self.nodes(), "flight": [self.flight[k] for k in sorted(self.flight)], "clients": []}
        self._i += 1
        return frame

    def nodes(self) -> list[dict]:
        """Every member's latest view, as a frame lists them."""
        return [down_view(m) if m in self.down or m not in self.views else self.views[m] for m in self.members]

    def _unpend(self, msg: _Msg) -> None:
        queue = self._pending.get((msg.src, msg.dst, msg.view["type"]))
        if queue is not None:
            try:
                queue.remove(msg)
            except ValueError:
                pass

    def _forget(self, before: float) -> None:
        """Sends never received and receipts never matched, older than ``before``."""
        for table in (self._pending, self._early):
            for key in list(table):
                queue = table[key]
                while queue and (queue[0].t if type(queue[0]) is _Msg else queue[0].key[0]) < before:
                    queue.popleft()
                if not queue:
                    del table[key]


class SseParser:
    """Splits a server-sent-events byte stream into ``(event, data)`` pairs
    (comments and ``id``/``retry`` fields are dropped; data is text)."""

    def __init__(self, limit: int = 16 * 1024 * 1024) -> None:
        self._buf = b""
        self.limit = limit

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buf += chunk
        out: list[tuple[str, str]] = []
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                if len(self._buf) > self.limit:
                    raise ValueError(f"an event of more than {self.limit} bytes")
                return out
            block, self._buf = self._buf[:end], self._buf[end + 2:]
            event, data = "message", []
            for line in block.decode("utf-8", "replace").split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
            if data:
                out.append((event, "\n".join(data)))
