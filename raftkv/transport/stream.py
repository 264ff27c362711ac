"""The stream layer: dialing, the listener, TLS.

Theory of operation
-------------------
hashicorp/raft splits its network transport from a *stream layer* that only
dials and accepts (``StreamLayer``: ``Dial`` and a ``net.Listener``); this is
raftkv's. Above it the transports speak their wire; below it are asyncio
streams.

Dialing: :func:`open_stream` connects to a ``host:port`` within a deadline,
plain or with the client's TLS context (the host is the name the peer's
certificate must carry). :func:`tune` then readies a connection for Raft
traffic: ``TCP_NODELAY`` (frames are already batched per wakeup, Nagle
would only add latency) and a write buffer that asks ``drain()`` to wait only
past 1 MiB unsent.

Listening: without TLS a transport uses ``asyncio.start_server``. With TLS
it uses :class:`TlsListener`, a plain accept loop that runs each handshake
itself, because asyncio's TLS server would drop a failed handshake without
a word: here it is logged as ``refused connection`` (``tls: ...``). The
listener counts connections against ``max_connections`` *before* starting a
handshake, so a flood of connections costs no CPU on the handshake.

:func:`linger` is the polite way to close a connection whose peer is still
writing: read and discard until it hangs up, so that the last answer
written is not lost to a reset.

Addresses are ``host:port`` with an IPv6 host in brackets, read and written
by :mod:`raftkv.config.textforms` as everywhere in raftkv (:func:`dial_address`
adds Go's texts for a bad port); :func:`sockaddr` prints a socket's address
that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any, Awaitable, Callable

from raftkv.config.textforms import join_host_port, split_host_port

from .contract import NET_LOGGER, LogFn
from .gotext import tls_error_text

__all__ = ["READ_SIZE", "WRITE_HIGH_WATER", "TlsListener", "dial_address", "linger", "open_stream", "sockaddr",
           "tune"]

READ_SIZE = 256 * 1024
WRITE_HIGH_WATER = 1024 * 1024   # drain() waits only past this much unsent data

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def dial_address(address: str) -> tuple[str, int]:
    """The host and port to dial for ``address`` (``host:port``, or
    ``[v6]:port``), read by :func:`raftkv.config.textforms.split_host_port`; a
    missing or bad port is refused in Go's words (``address h: missing port
    in address``), which the dial's failure line then carries."""
    host, port = split_host_port(address)
    if not port:
        raise ValueError(f"address {address}: missing port in address")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"address {address}: invalid port")
    return host, int(port)


def sockaddr(addr: Any) -> str:
    """A socket address (``get_extra_info("peername")``) as ``host:port``."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        return join_host_port(str(addr[0]), int(addr[1]))
    return str(addr)


async def open_stream(address: str, timeout: float, context: ssl.SSLContext | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``address`` within ``timeout`` seconds, with TLS if a
    client ``context`` is given. Raises what connecting raised (ValueError
    for an address that is not ``host:port``)."""
    host, port = dial_address(address)
    async with asyncio.timeout(timeout):
        if context is None:
            return await asyncio.open_connection(host, port, limit=READ_SIZE)
        return await asyncio.open_connection(host, port, limit=READ_SIZE, ssl=context, server_hostname=host)


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    # Frames are already batched per wakeup; Nagle would only add latency.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass


def tune(writer: asyncio.StreamWriter) -> None:
    """Ready a dialed connection for Raft traffic (see the module docstring)."""
    set_nodelay(writer)
    writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
    """Flush what was written, then read and discard until the peer hangs
    up (or ``timeout`` passes): closing with its bytes unread would make the
    kernel reset the connection and discard our last answer."""
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
            while await reader.read(READ_SIZE):
                pass
    except (OSError, TimeoutError):
        pass


class TlsListener:
    """The listening port with TLS: a plain accept loop that runs each
    handshake (within ``handshake_timeout``) and hands the connection to
    ``serve`` in the same task. At most ``max_connections`` such tasks at
    once (handshaking or served): beyond that a new socket is closed at once
    and ``refuse(remote)`` told. Quacks like the
    ``asyncio.Server`` it replaces (``sockets``, ``close``, ``wait_closed``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, context: ssl.SSLContext, handshake_timeout: float,
                 max_connections: int, serve: Serve, refuse: Callable[[str], None], log: LogFn) -> None:
        self.loop = loop
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.serve = serve
        self.refuse = refuse
        self.log = log
        self.sockets: list[socket.socket] = []
        self.handshakes: set[asyncio.Task] = set()
        self.closed = False
        self._accepting: asyncio.Task | None = None

    def listen(self, host: str, port: int) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
        sock.setblocking(False)
        self.sockets = [sock]
        self._accepting = self.loop.create_task(self._accept(sock))

    async def _accept(self, sock: socket.socket) -> None:
        loop = self.loop
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError:
                if self.closed:
                    return
                await asyncio.sleep(0.1)  # out of file descriptors, say: try again shortly
                continue
            if self.closed:
                conn.close()
                continue
            if len(self.handshakes) >= self.max_connections:
                # before the TLS handshake: a flood must not cost us its CPU
                conn.close()
                self.refuse(sockaddr(peer))
                continue
            task = loop.create_task(self._handshake(conn))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, conn: socket.socket) -> None:
        """The TLS handshake of an accepted connection, then ``serve``. A
        caller without a certificate from the CA (or with none at all) fails
        here and is logged as ``refused connection``."""
        try:
            remote = sockaddr(conn.getpeername())
        except OSError:
            conn.close()
            return
        loop = self.loop
        reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
        try:
            transport, protocol = await loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), conn,
                ssl=self.context, ssl_handshake_timeout=self.handshake_timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, ssl.SSLError, TimeoutError) as e:
            conn.close()
            if not self.closed:
                self.log("ERROR", NET_LOGGER, "refused connection",
                         [("remote-address", remote), ("error", f"tls: {tls_error_text(e)}")])
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self.serve(reader, writer)

    def close(self) -> None:
        """Stop accepting and abandon the handshakes under way."""
        self.closed = True
        if self._accepting is not None:
            self._accepting.cancel()
        for sock in self.sockets:
            sock.close()
        for task in list(self.handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
