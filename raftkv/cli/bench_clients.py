"""The HTTP clients of ``raftkv bench``: each keeps one request in flight on
its own keep-alive connection, as a user's program would.

:class:`RawClient` (``--http raw``, the default) is the lean one: it writes
``GET path`` and frames the answer with httptools' parser, skipping its body,
because the load generator shares the machine with the cluster it measures
and every microsecond it spends is taken from the nodes.
:class:`AiohttpClients` (``--http aiohttp``) shares one aiohttp session among
all clients instead (about three times the client CPU per request).
"""

from __future__ import annotations

import asyncio
import functools

import httptools


def _base(addr: str, cacert: str | None = None) -> str:
    """host:port means https when a CA is given (a TLS cluster), else http."""
    addr = addr.strip().rstrip("/")
    return addr if "://" in addr else ("https://" if cacert else "http://") + addr


@functools.lru_cache(maxsize=None)
def _tls_context(cacert: str | None):
    """One client SSL context per CA and process (a Plan crosses process
    boundaries by pickling, which an SSLContext does not survive)."""
    from raftkv.config.tls import client_context_for_ca
    return client_context_for_ca(cacert)


class HttpError(Exception):
    """The server's answer was not HTTP/1.1 this client understands."""


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight: the
    lean client (a few microseconds per request under uvloop). It sends
    ``GET path`` and lets httptools (llhttp) frame the answer; the body is
    skipped unread. Every raftkv answer says how long its body is, so one
    that would run until the connection closes is an error."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.status = 0
        self.framed = False
        self.close_after = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._garbage(exc.__context__ or exc)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._garbage(exc)

    def _garbage(self, exc: BaseException) -> None:
        self._fail(exc if isinstance(exc, HttpError) else HttpError(str(exc) or type(exc).__name__))
        if self.transport is not None:
            self.transport.close()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.framed:
            name = name.lower()
            self.framed = name == b"content-length" or name == b"transfer-encoding"

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = status = parser.get_status_code()
        if not self.framed and status >= 200 and status not in (204, 304):
            raise HttpError("answer without Content-Length")
        self.close_after = not parser.should_keep_alive()

    def on_message_complete(self) -> None:
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_result(self.status)
        if self.close_after and self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_exception(exc)

    def connection_lost(self, exc) -> None:
        self.transport = None
        self._fail(exc if isinstance(exc, Exception) else ConnectionResetError("connection closed"))


def _timed_out(fut: asyncio.Future, conn: _RawConnection) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
        if conn.transport is not None:
            conn.transport.close()


class RawClient:
    """One closed-loop client's connection to one node (reconnects on need)."""

    def __init__(self, base: str, timeout: float, cacert: str | None = None) -> None:
        from urllib.parse import urlsplit
        u = urlsplit(base)
        self.host = u.hostname or "127.0.0.1"
        self.tls = _tls_context(cacert) if u.scheme == "https" else None
        self.port = u.port or (443 if self.tls else 80)
        self.host_header = f"Host: {u.netloc}\r\n\r\n".encode()
        self.timeout = timeout
        self.conn: _RawConnection | None = None

    async def get(self, path: str) -> int:
        loop = asyncio.get_running_loop()
        conn = self.conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            tls = {"ssl": self.tls, "server_hostname": self.host} if self.tls is not None else {}
            _, conn = await asyncio.wait_for(loop.create_connection(_RawConnection, self.host, self.port, **tls),
                                             self.timeout)
            self.conn = conn
        fut = conn.waiter = loop.create_future()
        conn.transport.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.host_header)
        handle = loop.call_later(self.timeout, _timed_out, fut, conn)
        try:
            return await fut
        finally:
            handle.cancel()

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


class AiohttpClients:
    """The same interface over one shared aiohttp session (``--http aiohttp``)."""

    def __init__(self, timeout: float, cacert: str | None = None) -> None:
        import aiohttp
        tls = {"ssl": _tls_context(cacert)} if cacert else {}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, **tls),
            timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False,
            skip_auto_headers=("User-Agent",))

    def client(self, base: str):
        from yarl import URL
        session = self.session

        class _One:
            async def get(self, path: str) -> int:
                async with session.get(URL(base + path, encoded=True)) as resp:
                    await resp.read()
                    return resp.status

            def close(self) -> None:
                return None
        return _One()

    async def close(self) -> None:
        await self.session.close()
