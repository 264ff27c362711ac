"""Network fault injection for the TCP transports (``--enable-fault-injection``).

Theory of operation
-------------------
A :class:`FaultInjector` holds *rules*. Each rule names the peers it applies to
(or all peers), a direction (``out``: messages this node sends to them; ``in``:
messages this node receives from them; ``both``), and what to do: drop the
messages, or hold them for ``delay_ms`` before they go on. A rule may expire
after ``duration_s``. The transport asks :meth:`verdict` for every message it
sends or receives while any rule exists; with no rules it costs one attribute
test. Both TCP transports apply it (:mod:`.raftkv_protocol.tcp` and
:mod:`.raftkv_protocol.inbound`; :mod:`.hashicorp_protocol.transport`, where a
dropped request or answer also quiets its connection, see there).

Faults act on Raft *messages*, not connections: a dropped peer's
connections stay up and frames vanish, like a black-holing firewall, so
healing is instant and no redial storm follows. A snapshot stream from a
dropped peer is refused by closing its connection (the sender retries once
healed). Isolating one node needs rules on that node only: ``both`` stops
what it says and what it hears.

Rules come from ``POST /debug/faults`` as JSON, parsed by
:func:`parse_fault_spec` (pure, so fuzzed directly)::

    {"drop": ["n2", "n3"]}                       drop all traffic to/from n2, n3
    {"drop": "*"}  or  {"drop": true}            ... to/from every peer
    {"delay_ms": 200, "peers": ["n2"]}           delay traffic to/from n2
    {"drop": ["n2"], "direction": "out", "duration_s": 10}

``peers`` restricts ``delay_ms`` (and ``drop: true``); omitted, it means
every peer. Rules accumulate; ``DELETE /debug/faults`` removes them all.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["ALL", "FaultInjector", "FaultRule", "FaultSpecError", "parse_fault_spec"]

ALL = "*"
DIRECTIONS = ("both", "in", "out")
MAX_DELAY_MS = 60_000
MAX_DURATION_S = 24 * 3600
MAX_PEERS = 64


class FaultSpecError(ValueError):
    """A fault request is malformed; ``param`` names the culprit field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class FaultRule:
    peers: frozenset[str] | None   # None: every peer
    drop: bool
    delay_ms: int
    direction: str
    duration_s: float | None = None
    id: int = 0
    expires_at: float | None = None

    def applies(self, peer: str, direction: str) -> bool:
        return (self.direction == "both" or self.direction == direction) and (
            self.peers is None or peer in self.peers)

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "peers": sorted(self.peers) if self.peers is not None else ALL,
                               "direction": self.direction}
        if self.drop:
            out["drop"] = True
        else:
            out["delay_ms"] = self.delay_ms
        if self.expires_at is not None and now is not None:
            out["remaining_s"] = round(max(0.0, self.expires_at - now), 3)
        return out


def _peer_list(value: Any, param: str) -> frozenset[str] | None:
    if value == ALL:
        return None
    if not isinstance(value, list):
        raise FaultSpecError(param, f"invalid {param}: expected a list of node ids or \"*\"")
    if len(value) > MAX_PEERS:
        raise FaultSpecError(param, f"invalid {param}: at most {MAX_PEERS} peers")
    peers = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 64:
            raise FaultSpecError(param, f"invalid {param}: node ids must be non-empty strings")
        if item == ALL:
            return None
        peers.append(item.strip())
    return frozenset(peers)


def _number(doc: Mapping[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FaultSpecError(name, f"invalid {name}: expected a number")
    if not lo <= value <= hi:
        raise FaultSpecError(name, f"invalid {name}: must be between {lo:g} and {hi:g}")
    return value


def parse_fault_spec(doc: Any) -> list[FaultRule]:
    """The rules a ``POST /debug/faults`` body asks for (see module doc)."""
    if not isinstance(doc, dict):
        raise FaultSpecError("body", "invalid JSON body: expected an object")
    known = {"drop", "delay_ms", "peers", "direction", "duration_s"}
    unknown = sorted(k for k in doc if k not in known)
    if unknown:
        raise FaultSpecError(unknown[0] or "body", f"unknown field {unknown[0]!r} (use {', '.join(sorted(known))})")
    direction = doc.get("direction", "both")
    if direction not in DIRECTIONS:
        raise FaultSpecError("direction", f"invalid direction {direction!r}: use both, in or out")
    duration = _number(doc, "duration_s", 0.001, MAX_DURATION_S)
    delay = _number(doc, "delay_ms", 0, MAX_DELAY_MS)
    peers = _peer_list(doc["peers"], "peers") if doc.get("peers") is not None else None
    rules: list[FaultRule] = []
    drop = doc.get("drop")
    if drop is True:
        rules.append(FaultRule(peers, True, 0, direction, duration))
    elif drop not in (None, False, []):
        rules.append(FaultRule(_peer_list(drop, "drop"), True, 0, direction, duration))
    if delay:
        # whole milliseconds, rounded up: a delay asked for is never none
        rules.append(FaultRule(peers, False, math.ceil(delay), direction, duration))
    if not rules:
        raise FaultSpecError("body", "nothing to inject: give drop (peer ids) and/or delay_ms > 0")
    return rules


class FaultInjector:
    """The active rules of one node; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str, str, list], None] | None = None) -> None:
        self.clock = clock
        self.log = log
        self.rules: list[FaultRule] = []
        self.dropped = {"in": 0, "out": 0}
        self.delayed = {"in": 0, "out": 0}
        self._ids = itertools.count(1)

    def add(self, rules: list[FaultRule]) -> list[FaultRule]:
        now = self.clock()
        added = []
        for r in rules:
            rule = FaultRule(r.peers, r.drop, r.delay_ms, r.direction, r.duration_s, next(self._ids),
                             None if r.duration_s is None else now + r.duration_s)
            self.rules.append(rule)
            added.append(rule)
            if self.log is not None:
                self.log("WARN", "injecting network fault", list(rule.to_dict(now).items()))
        return added

    def clear(self) -> int:
        n = len(self.rules)
        self.rules = []
        if n and self.log is not None:
            self.log("WARN", "network faults healed", [("rules", n)])
        return n

    def _expire(self, now: float) -> None:
        live = [r for r in self.rules if r.expires_at is None or r.expires_at > now]
        if len(live) != len(self.rules):
            gone = len(self.rules) - len(live)
            self.rules = live
            if self.log is not None:
                self.log("WARN", "network faults expired", [("rules", gone), ("remaining", len(live))])

    def verdict(self, peer: str, direction: str) -> tuple[bool, float]:
        """(drop?, delay in seconds) for one message to/from ``peer``."""
        if not self.rules:
            return False, 0.0
        self._expire(self.clock())
        delay = 0
        for r in self.rules:
            if r.applies(peer, direction):
                if r.drop:
                    self.dropped[direction] += 1
                    return True, 0.0
                delay = max(delay, r.delay_ms)
        if delay:
            self.delayed[direction] += 1
        return False, delay / 1000

    def describe(self) -> dict[str, Any]:
        now = self.clock()
        self._expire(now)
        return {"rules": [r.to_dict(now) for r in self.rules], "dropped": dict(self.dropped),
                "delayed": dict(self.delayed)}
