"""The learning page's live source, the serving node's side: :class:`Merge`
turns the step records of every member (:class:`~raftkv.learn.live.StepTap`)
into the simulator's frames, and :class:`SseParser` splits the bytes of the
members' server-sent-events streams. :mod:`raftkv.learn.live`'s docstring
has the theory of operation (time order, pairing sends with receipts, lost
messages, bounds). Nothing here does IO or imports aiohttp.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Iterable

from .picture import down_view, step_label

__all__ = ["HOLD_MS", "LOST_MS", "MERGE_CAPACITY", "SKEW_MS", "Merge", "SseParser", "is_heartbeat"]

HOLD_MS = 300            # how long the merge holds a record before its frame goes out
LOST_MS = 5000           # a message not received this long after its sending is lost
MERGE_CAPACITY = 20_000  # records the merge holds at most
SKEW_MS = 100            # how far apart the members' wall clocks may be


def is_heartbeat(message: dict) -> bool:
    """A message view of a heartbeat or its answer that carries no read round."""
    return (message.get("heartbeat") is True and not message.get("read_seq")
            and message.get("type") in ("AppendEntries", "AppendEntriesResponse"))


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
