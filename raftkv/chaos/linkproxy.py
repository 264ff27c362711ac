"""A userspace proxy that puts delay, loss, duplication and reordering on
directed Raft links, the way etcd's robustness tests do.

Theory of operation
-------------------
raftkv's TCP transport is one-way per connection: a node dials each peer for
its *own* outbound messages and sends replies over its own dial too
(``transport/raftkv_protocol/tcp.py``). So every byte on a connection that node
A opened towards node B is a message from A to B, and a proxy in the middle of
A's dials to B *is* the directed link A -> B.

One proxy process runs inside each node's network namespace and owns that
node's outbound links. It listens on the address each peer *advertises* for
Raft (a per-peer "link address" that exists only on the loopback of the
namespaces, see ``raftkv/chaos/netns.py``) and forwards to the peer's real
address across the bridge. The node never knows: it dials what its peer
advertised.

The proxy understands the transport's framing (a 4-byte big-endian length,
then the body), so its faults act on whole messages, as a lossy network acts
on whole datagrams:

* ``delay_ms`` (+ ``jitter_ms``): each frame is held that long; order is kept
  unless ``reorder`` says otherwise;
* ``loss``: the probability a frame is dropped (``1.0`` is a one-way cut);
* ``duplicate``: the probability a frame is written twice;
* ``reorder``: the probability a frame is held back and written after the
  next one.

The first frame (the transport's ``Hello``) always passes untouched, and a
snapshot stream (``InstallSnapshot`` and its chunks) is only delayed: a lost
chunk would be a broken stream, not a lost message. Bytes the acceptor writes
back (snapshot acks) are relayed at once.

The upstream socket has ``TCP_USER_TIMEOUT`` set and its dial a short timeout,
so a route partition (``ip route add blackhole``) fails a stuck connection
within about two seconds; the node then redials through the proxy, and a
healed link carries traffic again without waiting out TCP's retransmission
backoff.

Control: a Unix socket (a file path, so the test in the root namespace can
reach a proxy in another namespace) taking one JSON object per line and
answering one:

    {"op": "set", "link": "n2", "faults": {"delay_ms": 50, "loss": 0.1}}
    {"op": "heal"}                 -> every link back to a clean wire
    {"op": "stats"}                -> frames passed/dropped/duplicated per link

Run: ``python -m raftkv.chaos.linkproxy --control PATH --link
n2=10.77.0.102:9000,10.77.0.12:9000 ...`` (peer id = listen, target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import struct
import time
from dataclasses import asdict, dataclass, field, fields

__all__ = ["LinkFaults", "LinkProxy", "main"]

_HEADER = struct.Struct(">I")
_MAX_FRAME = 256 * 1024 * 1024
_UPSTREAM_DIAL_TIMEOUT = 1.0
_UPSTREAM_USER_TIMEOUT_MS = 2000
_SNAPSHOT_TYPES: frozenset[int] | None = None


def _type_code(body: bytes) -> int | None:
    """The type code of a frame body: msgpack ``[code, ...]``."""
    if len(body) < 2:
        return None
    first = body[0]
    if 0x90 <= first <= 0x9F:
        pos = 1
    elif first == 0xDC:
        pos = 3
    elif first == 0xDD:
        pos = 5
    else:
        return None
    if pos >= len(body):
        return None
    b = body[pos]
    if b <= 0x7F:
        return b
    if b == 0xCC and pos + 1 < len(body):
        return body[pos + 1]
    return None


@dataclass
class LinkFaults:
    """What the wire does to the frames of one directed link."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    @classmethod
    def from_dict(cls, spec: dict) -> "LinkFaults":
        names = {f.name for f in fields(cls)}
        unknown = set(spec) - names
        if unknown:
            raise ValueError(f"unknown link fault(s) {sorted(unknown)}; known: {sorted(names)}")
        faults = cls(**{k: float(v) for k, v in spec.items()})
        for p in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(faults, p) <= 1.0:
                raise ValueError(f"{p} must be a probability in [0, 1]")
        if faults.delay_ms < 0 or faults.jitter_ms < 0:
            raise ValueError("delay_ms and jitter_ms must not be negative")
        return faults


@dataclass
class LinkStats:
    connections: int = 0
    frames: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    upstream_failures: int = 0


@dataclass
class _Link:
    peer: str
    listen: tuple[str, int]
    target: tuple[str, int]
    faults: LinkFaults = field(default_factory=LinkFaults)
    stats: LinkStats = field(default_factory=LinkStats)


def _parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class LinkProxy:
    """The outbound links of one node (see the module docstring)."""

    def __init__(self, links: list[_Link], rng: random.Random | None = None) -> None:
        self.links = {link.peer: link for link in links}
        self.rng = rng or random.Random()
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        for link in self.links.values():
            server = await asyncio.start_server(
                lambda r, w, link=link: self._spawn(self._serve(link, r, w)),
                link.listen[0], link.listen[1], reuse_address=True)
            self._servers.append(server)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------- control

    def control(self, request: dict) -> dict:
        op = request.get("op")
        if op == "set":
            link = self.links.get(request.get("link", ""))
            if link is None:
                return {"error": f"no link to {request.get('link')!r}; links: {sorted(self.links)}"}
            link.faults = LinkFaults.from_dict(request.get("faults") or {})
            return {"ok": True, "link": link.peer, "faults": asdict(link.faults)}
        if op == "heal":
            for link in self.links.values():
                link.faults = LinkFaults()
            return {"ok": True}
        if op == "stats":
            return {peer: {"faults": asdict(link.faults), **asdict(link.stats)}
                    for peer, link in self.links.items()}
        return {"error": f"unknown op {op!r} (set, heal, stats)"}

    async def serve_control(self, path: str) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    try:
                        answer = self.control(json.loads(line))
                    except (ValueError, TypeError) as exc:
                        answer = {"error": str(exc)}
                    writer.write(json.dumps(answer).encode() + b"\n")
                    await writer.drain()
            finally:
                writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return await asyncio.start_unix_server(handle, path)

    # -------------------------------------------------------------- relay

    async def _serve(self, link: _Link, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        link.stats.connections += 1
        try:
            async with asyncio.timeout(_UPSTREAM_DIAL_TIMEOUT):
                up_r, up_w = await asyncio.open_connection(*link.target)
        except (OSError, TimeoutError):
            link.stats.upstream_failures += 1
            down_w.transport.abort()
            return
        sock = up_w.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18),
                                _UPSTREAM_USER_TIMEOUT_MS)
        forward = asyncio.ensure_future(self._forward_frames(link, down_r, up_w))
        backward = asyncio.ensure_future(self._relay_bytes(up_r, down_w))
        try:
            await asyncio.wait({forward, backward}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (forward, backward):
                task.cancel()
            await asyncio.gather(forward, backward, return_exceptions=True)
            for w in (up_w, down_w):
                w.transport.abort()

    @staticmethod
    async def _relay_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _forward_frames(self, link: _Link, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        """Read frames from the caller; schedule each by the link's faults;
        a writer task emits them in the order of their due times."""
        queue: asyncio.Queue = asyncio.Queue()
        writer_task = asyncio.ensure_future(self._emit(queue, writer))
        first, stream_only = True, False
        last_due, held = 0.0, None
        rng = self.rng
        try:
            while True:
                try:
                    header = await reader.readexactly(4)
                except asyncio.IncompleteReadError:
                    return
                (length,) = _HEADER.unpack(header)
                if length > _MAX_FRAME:
                    return
                body = await reader.readexactly(length)
                frame = header + body
                if writer_task.done():
                    return
                link.stats.frames += 1
                if first:
                    first = False
                    queue.put_nowait((0.0, frame))
                    continue
                code = _type_code(body)
                if code is not None and code in _snapshot_codes():
                    stream_only = True
                f = link.faults
                now = time.monotonic()
                due = now + (f.delay_ms + (rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0)) / 1000.0
                due = max(due, last_due)
                last_due = due
                if stream_only:
                    queue.put_nowait((due, frame))
                    continue
                if f.loss and rng.random() < f.loss:
                    link.stats.dropped += 1
                    continue
                copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
                if copies == 2:
                    link.stats.duplicated += 1
                if held is None and f.reorder and rng.random() < f.reorder:
                    link.stats.reordered += 1
                    held = frame * copies
                    continue
                queue.put_nowait((due, frame * copies))
                if held is not None:
                    queue.put_nowait((due, held))
                    held = None
        finally:
            if held is not None:
                queue.put_nowait((last_due, held))
            queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await writer_task

    @staticmethod
    async def _emit(queue: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()


def _snapshot_codes() -> frozenset[int]:
    # read from the codec, so the proxy follows the wire format instead of copying it
    global _SNAPSHOT_TYPES
    if _SNAPSHOT_TYPES is None:
        from raftkv.transport import codec
        _SNAPSHOT_TYPES = frozenset(code for cls, code in codec.TYPE_CODES.items()
                                    if cls.__name__ in ("InstallSnapshot", "SnapshotChunk"))
    return _SNAPSHOT_TYPES


async def _run(args: argparse.Namespace) -> None:
    links = []
    for spec in args.link:
        peer, _, addrs = spec.partition("=")
        listen, _, target = addrs.partition(",")
        links.append(_Link(peer, _parse_hostport(listen), _parse_hostport(target)))
    proxy = LinkProxy(links, random.Random(args.seed))
    await proxy.start()
    control = await proxy.serve_control(args.control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("link proxy ready", flush=True)
    await stop.wait()
    control.close()
    await proxy.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m raftkv.chaos.linkproxy", description=__doc__.split("\n")[0])
    parser.add_argument("--control", required=True, help="Unix socket path for fault commands")
    parser.add_argument("--link", action="append", default=[],
                        help="PEER=LISTEN_HOST:PORT,TARGET_HOST:PORT (repeatable)")
    parser.add_argument("--seed", type=int, default=None)
    asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
