"""In-process transport with fault injection, for tests.

Theory of operation
-------------------
A :class:`MemoryNetwork` is a switchboard: each :class:`MemoryTransport`
registers its address on ``start()``, and ``send(to_id, address, message)``
routes by *address*, as TCP would (a stale address reaches whoever now owns
it, or nobody). Delivery is never synchronous: the receiver's
``handler(from_id, message)`` runs from the event loop (``call_soon``, or a
timer when a delay is set), so a node never re-enters itself mid-step.

Each directed link (sender id, receiver id) is a FIFO: a delay postpones a
message but never lets a later one on the same link overtake it, matching the
TCP transport's per-connection order. Faults are decided by node id and
checked twice, when a message is sent and when it is due, so a partition also
swallows messages already in flight:

* ``isolate(n)`` drops all traffic to and from ``n``;
* ``block(a, b)`` drops traffic from ``a`` to ``b`` only (one-way loss);
* ``delay(ms, from_id=None, to_id=None)`` adds latency to matching links
  (``None`` matches any node; the largest matching rule applies);
* ``heal()`` clears every fault.

``InstallSnapshot`` is streamed like the TCP transport does when the sender
has a ``snapshot_source`` and the receiver a ``snapshot_sink``: the bytes are
copied chunk by chunk and the receiver gets ``data=`` the sink's handle. A
snapshot that cannot be delivered calls the sender's ``on_snapshot_failed``.
With ``codec_check=True`` every message goes through the wire codec, so tests
of the core also exercise the encoding.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from typing import Any, Callable

from raftkv.raft.messages import InstallSnapshot, SnapshotMeta

from .codec import decode_body, encode_body

LogFn = Callable[[str, str, str, list[tuple[str, object]]], None]

_CHUNK = 1024 * 1024


def _no_log(level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None:
    pass


class _Link:
    """Messages in flight on one directed link, in send order."""

    __slots__ = ("queue", "timer", "last_due")

    def __init__(self) -> None:
        self.queue: deque[tuple[float, MemoryTransport, str, Any]] = deque()
        self.timer: asyncio.Handle | None = None
        self.last_due = 0.0


class MemoryNetwork:
    def __init__(self) -> None:
        self._by_address: dict[str, MemoryTransport] = {}
        self._isolated: set[str] = set()
        self._blocked: set[tuple[str, str]] = set()
        self._delays: dict[tuple[str | None, str | None], float] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self.delivered = 0
        self.dropped = 0

    def transport(self, node_id: str, handler: Callable[[str, Any], None], address: str | None = None,
                  **kwargs: Any) -> "MemoryTransport":
        return MemoryTransport(self, node_id, handler, address=address, **kwargs)

    # --- faults ------------------------------------------------------------

    def isolate(self, node_id: str) -> None:
        self._isolated.add(node_id)

    def rejoin(self, node_id: str) -> None:
        self._isolated.discard(node_id)

    def block(self, from_id: str, to_id: str) -> None:
        self._blocked.add((from_id, to_id))

    def unblock(self, from_id: str, to_id: str) -> None:
        self._blocked.discard((from_id, to_id))

    def delay(self, ms: float, from_id: str | None = None, to_id: str | None = None) -> None:
        """Add ``ms`` of latency to links from ``from_id`` to ``to_id``
        (``None`` = any); ``ms=0`` removes the rule."""
        if ms > 0:
            self._delays[(from_id, to_id)] = float(ms)
        else:
            self._delays.pop((from_id, to_id), None)

    def heal(self) -> None:
        self._isolated.clear()
        self._blocked.clear()
        self._delays.clear()

    def can_deliver(self, from_id: str, to_id: str) -> bool:
        return (from_id not in self._isolated and to_id not in self._isolated
                and (from_id, to_id) not in self._blocked)

    def delay_ms(self, from_id: str, to_id: str) -> float:
        d = self._delays
        if not d:
            return 0.0
        return max(d.get((from_id, to_id), 0.0), d.get((from_id, None), 0.0),
                   d.get((None, to_id), 0.0), d.get((None, None), 0.0))

    # --- routing -----------------------------------------------------------

    def _attach(self, transport: "MemoryTransport") -> None:
        other = self._by_address.get(transport.address)
        if other is not None and other is not transport and not other.closed:
            raise OSError(f"listen tcp {transport.address}: bind: address already in use")
        self._by_address[transport.address] = transport

    def _detach(self, transport: "MemoryTransport") -> None:
        if self._by_address.get(transport.address) is transport:
            del self._by_address[transport.address]

    def _route(self, sender: "MemoryTransport", to_id: str, address: str, message: Any) -> None:
        target = self._by_address.get(address)
        if target is None or target.closed or not self.can_deliver(sender.node_id, target.node_id):
            self._lost(sender, to_id, message)
            return
        loop = sender._loop
        now = loop.time()
        link = self._links.get((sender.node_id, target.node_id))
        if link is None:
            link = self._links[(sender.node_id, target.node_id)] = _Link()
        due = max(now + self.delay_ms(sender.node_id, target.node_id) / 1000.0, link.last_due)
        link.last_due = due
        link.queue.append((due, target, to_id, message))
        if link.timer is None:
            self._schedule(loop, sender, link)

    def _schedule(self, loop: asyncio.AbstractEventLoop, sender: "MemoryTransport", link: _Link) -> None:
        due = link.queue[0][0]
        if due <= loop.time():
            link.timer = loop.call_soon(self._fire, loop, sender, link)
        else:
            link.timer = loop.call_at(due, self._fire, loop, sender, link)

    def _fire(self, loop: asyncio.AbstractEventLoop, sender: "MemoryTransport", link: _Link) -> None:
        link.timer = None
        now = loop.time()
        queue = link.queue
        while queue and queue[0][0] <= now:
            _, target, to_id, message = queue.popleft()
            if target.closed or sender.closed or not self.can_deliver(sender.node_id, target.node_id):
                self._lost(sender, to_id, message)
                continue
            self.delivered += 1
            target._deliver(sender, message)
        if queue:
            self._schedule(loop, sender, link)

    def _lost(self, sender: "MemoryTransport", to_id: str, message: Any) -> None:
        self.dropped += 1
        if type(message) is InstallSnapshot:
            sender._snapshot_failed(to_id)


class MemoryTransport:
    """A :class:`~raftkv.transport.contract.Transport` on a :class:`MemoryNetwork`."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: str,
        handler: Callable[[str, Any], None],
        *,
        address: str | None = None,
        log: LogFn | None = None,
        snapshot_source: Callable[[SnapshotMeta], Any] | None = None,
        snapshot_sink: Callable[[str, SnapshotMeta], Any] | None = None,
        on_snapshot_failed: Callable[[str], None] | None = None,
        codec_check: bool = False,
    ) -> None:
        self.network = network
        self.node_id = node_id
        self.handler = handler
        self.address = address or node_id
        self._log: LogFn = log or _no_log
        self.snapshot_source = snapshot_source
        self.snapshot_sink = snapshot_sink
        self.on_snapshot_failed = on_snapshot_failed
        self.codec_check = codec_check
        self.closed = True
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.network._attach(self)
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        self.network._detach(self)

    def learn_configuration(self, configuration: Any) -> None:
        """Nothing to learn: senders are named by id, and a snapshot is
        copied whole from the sender's source."""

    async def disconnect(self, peer_id: str) -> None:
        """Nothing to forget: no connection or queue is kept per peer."""

    def send(self, to_id: str, address: str, message: Any) -> None:
        if self.closed:
            self.network.dropped += 1
            return
        if self.codec_check:
            data = message.data if type(message) is InstallSnapshot else None
            message = decode_body(encode_body(message))
            if data is not None:
                message = dataclasses.replace(message, data=data)
        self.network._route(self, to_id, address, message)

    def _deliver(self, sender: "MemoryTransport", message: Any) -> None:
        if type(message) is InstallSnapshot and sender.snapshot_source is not None:
            message = self._receive_snapshot(sender, message)
            if message is None:
                return
        try:
            self.handler(sender.node_id, message)
        except Exception as e:
            self._log("ERROR", "raft.net", "failed to handle incoming command",
                      [("error", f"{type(e).__name__}: {e}")])

    def _receive_snapshot(self, sender: "MemoryTransport", message: InstallSnapshot) -> InstallSnapshot | None:
        # Synchronous copy: test snapshots are small, and it keeps delivery
        # order identical to every other message on the link.
        if self.snapshot_sink is None:
            sender._snapshot_failed(self.node_id)
            return None
        sink = source = None
        try:
            source = sender.snapshot_source(message.meta)
            sink = self.snapshot_sink(sender.node_id, message.meta)
            while chunk := source.read(_CHUNK):
                sink.write(chunk)
            handle = sink.close()
            sink = None
            return dataclasses.replace(message, data=handle)
        except Exception as e:
            self._log("ERROR", "raft", "failed to copy snapshot", [("error", str(e))])
            if sink is not None:
                try:
                    sink.cancel()
                except Exception:
                    pass
            sender._snapshot_failed(self.node_id)
            return None
        finally:
            if source is not None:
                try:
                    source.close()
                except Exception:
                    pass

    def _snapshot_failed(self, to_id: str) -> None:
        if self.on_snapshot_failed is not None and self._loop is not None and not self.closed:
            self._loop.call_soon(self.on_snapshot_failed, to_id)
