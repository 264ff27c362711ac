"""A bounded ring buffer of this node's recent log records, for ``/ui``.

Theory of operation: an attached :class:`EventRing` is a structlog processor
in hclog's chain (:func:`.hclog.add_processor`), after level filtering and
before rendering. It sees every record the node writes, unrendered, numbers it
and appends a tuple to a ``deque(maxlen=...)``: O(1), no rendering, safe from
the disk thread (``deque.append`` and ``next(count)`` are atomic in CPython).
Readers (``/debug/events``, the ``/debug/stream`` server-sent events) ask for
the records after a sequence number and get plain JSON-ready dicts; field
values are turned into text only then, the way hclog prints them.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from datetime import timedelta
from typing import Any

from . import hclog

__all__ = ["EventRing", "install", "record_to_dict", "ring_for"]

DEFAULT_SIZE = 2000


def _text(value: object) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, timedelta):
        return hclog.format_duration(value)
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


def record_to_dict(node_id: str, rec: tuple) -> dict:
    seq, when, level, name, message, fields = rec
    return {"seq": seq, "node": node_id, "time": when, "level": level, "logger": name,
            "message": message, "fields": [[str(k), _text(v)] for k, v in fields]}


class EventRing:
    """The last ``size`` log records of one node."""

    def __init__(self, node_id: str, size: int = DEFAULT_SIZE) -> None:
        self.node_id = node_id
        self._records: deque[tuple] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self.started = time.time()  # tells a reconnecting page that the process restarted

    def __call__(self, _logger: object, _method_name: str, record: dict[str, Any]) -> dict[str, Any]:
        """structlog processor: keep *record* (the shape :func:`.hclog.to_hclog_record` makes)."""
        self._records.append((next(self._seq), record["timestamp"], record["level"], record["logger"],
                              record["event"], tuple(record["fields"])))
        return record

    def attach(self) -> "EventRing":
        hclog.add_processor(self)
        return self

    def detach(self) -> None:
        hclog.remove_processor(self)

    @property
    def last_seq(self) -> int:
        records = self._records
        return records[-1][0] if records else 0

    def since(self, seq: int = 0, limit: int | None = None) -> list[dict]:
        """Records numbered above ``seq``, oldest first (at most the newest ``limit``)."""
        out = []
        # a C-level copy: the disk thread may append while we look
        for rec in reversed(self._records.copy()):
            if rec[0] <= seq or (limit is not None and len(out) >= limit):
                break
            out.append(rec)
        out.reverse()
        return [record_to_dict(self.node_id, r) for r in out]


_process_ring: EventRing | None = None


def install(node_id: str, size: int = DEFAULT_SIZE) -> EventRing:
    """The process's ring, in hclog's processor chain from now on (``raftkv serve``
    calls this before the node starts, so the startup lines are kept)."""
    global _process_ring
    if _process_ring is None:
        _process_ring = EventRing(node_id, size).attach()
    return _process_ring


def ring_for(node_id: str) -> EventRing:
    """The installed ring if it is this node's, else a new one attached now."""
    if _process_ring is not None and _process_ring.node_id == node_id:
        return _process_ring
    return EventRing(node_id).attach()
