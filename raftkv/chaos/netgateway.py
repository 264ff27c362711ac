"""The way in from the root network namespace to nodes in their own namespaces.

Theory of operation
-------------------
The test (or a person with curl) lives in the root namespace, which has no
route to the private addresses of a namespaced cluster, and must get none:
nothing is ever added to the root namespace. A gateway process opens one
listening socket per node on 127.0.0.1 *while still in the root namespace*,
then moves itself into the cluster's switch namespace (``setns(2)``), where
the bridge and every node's address are reachable. A socket keeps the
namespace it was created in, so the listeners stay on the root namespace's
loopback while every connection the gateway dials out is made from the
switch namespace. Bytes are relayed untouched (HTTP keep-alive, streaming
responses, anything).

The gateway prints one JSON line, ``{"n1": 41234, ...}`` (the local ports),
and then serves until SIGTERM.

Run: ``python -m raftkv.chaos.netgateway --netns NAME --target n1=10.77.0.11:8000 ...``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket

__all__ = ["enter_netns", "main"]

_CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into the named network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


async def _serve(target: tuple[str, int], down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(3.0):
            up_r, up_w = await asyncio.open_connection(*target)
    except (OSError, TimeoutError):
        down_w.transport.abort()
        return
    tasks = [asyncio.ensure_future(_relay(down_r, up_w)), asyncio.ensure_future(_relay(up_r, down_w))]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for w in (up_w, down_w):
            w.transport.abort()


async def _run(listeners: dict[str, tuple[socket.socket, tuple[str, int]]]) -> None:
    servers = []
    for sock, target in listeners.values():
        servers.append(await asyncio.start_server(lambda r, w, t=target: _serve(t, r, w), sock=sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m raftkv.chaos.netgateway",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--netns", required=True, help="namespace to dial from (the switch)")
    parser.add_argument("--target", action="append", default=[], help="NAME=HOST:PORT (repeatable)")
    args = parser.parse_args(argv)
    listeners = {}
    for spec in args.target:
        name, _, hostport = spec.partition("=")
        host, _, port = hostport.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        listeners[name] = (sock, (host, int(port)))
    enter_netns(args.netns)
    print(json.dumps({name: sock.getsockname()[1] for name, (sock, _) in listeners.items()}), flush=True)
    asyncio.run(_run(listeners))


if __name__ == "__main__":
    main()
