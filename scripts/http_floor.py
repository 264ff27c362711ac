"""What serving one read over HTTP costs in this Python, without Raft.

    .venv/bin/python scripts/http_floor.py bare PORT       # httptools + uvloop, a fixed answer
    .venv/bin/python scripts/http_floor.py fastpath PORT   # raftkv's fast path and read route, a stub node

Then load it as ``scripts/bench-vs.sh`` loads a node (one wrk thread, 64
connections) and read the server's CPU from /proc, or profile it:

    wrk -t1 -c64 -d5s -s scripts/wrk/get.lua http://127.0.0.1:PORT   # LEVEL=lease for lease reads
    perf record -e cpu-clock -F 999 -p PID -- sleep 5 && perf report --sort dso

``bare`` is the floor: the parser, the event loop and the kernel's loopback
TCP, with one Python call per request. ``fastpath`` is everything raftkv's
HTTP side does for a ``GET /get`` (framing, limits, query and level parsing,
the route, the JSON answer, its headers) around a node that always holds a
lease and always has the value. docs/performance.md compares the two with a
real leader and with hraftd.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import httptools
import uvloop

from raftkv.http.api import kv
from raftkv.http.server.fastpath import FastPath

_BODY = b'{"key": "r1", "value": "%s", "level": "lease"}\n' % (b"v" * 64)
_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(_BODY), _BODY))


class _Bare(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(_ANSWER)


class _StubNode:
    is_leader = True

    def serve_under_lease(self) -> bool:
        return True

    def get_local(self, key: str) -> str:
        return "v" * 64

    def leader_contact_age(self) -> int:
        return 0


class _StubContext:
    node = _StubNode()
    id = "n1"
    max_body = 1 << 20


def _fast_path() -> FastPath:
    ctx = _StubContext()
    return FastPath({("GET", "/get"): lambda call: kv.handle_get(ctx, call)},  # type: ignore[arg-type]
                    fallback=lambda: asyncio.Protocol(), served_by=ctx.id)


async def _serve(kind: str, port: int) -> None:
    factory = _Bare if kind == "bare" else _fast_path()
    sock = socket.create_server(("127.0.0.1", port), backlog=1024)
    await asyncio.get_running_loop().create_server(factory, sock=sock)
    print(f"{kind} serving on 127.0.0.1:{sock.getsockname()[1]}", flush=True)  # PORT 0: one the OS chose
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("bare", "fastpath") or not argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    uvloop.run(_serve(argv[0], int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
