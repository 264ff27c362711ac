"""A connection the fast path handed to aiohttp, still behind the port's
limits (:class:`Relay`), and what is left of a connection after its last
answer (:class:`Linger`).

``site`` is the :class:`~raftkv.http.server.fastpath.FastPath` whose port
the connection came to: its limits, its refusals' wording, its log and its
count of open connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httptools

__all__ = ["LINGER", "Linger", "Relay"]

# How long a refused connection is read from (and the bytes dropped) after its
# answer, so that unread bytes do not make the kernel reset it, answer lost.
LINGER = 1.0


class Relay(asyncio.Protocol):
    """A connection handed to the fallback's protocol (aiohttp's request
    handler), still behind the port's limits: every byte is passed on
    unchanged, after a second llhttp parser -- with no callbacks but where
    messages begin and end, so it keeps nothing of a request -- has seen it.

    A head that takes longer than ``head_timeout`` from its first byte, or
    whose bytes exceed ``max_head``, ends the connection (408 or 431, written
    only when the fallback has answered every earlier request: otherwise the
    answers would interleave, and closing is all that is left). A body that
    stalls for ``idle_timeout`` while the fallback is reading ends it too.
    Idle keep-alive connections are the fallback's to close (aiohttp's
    ``keepalive_timeout``); header lines over ``max_head`` and more than
    ``max_headers`` of them its parser refuses.

    A head's size is exact when where it starts is known: at the start of a
    read, or after a message without a body (the parser is fed up to each
    blank line, as the fast path's is). After a body, llhttp does not say
    where in the read the body ended, so a head that starts there is
    counted from the next read on: no request within the limit is ever
    refused, and such a head costs at most the limit plus one read."""

    __slots__ = ("_broken", "_carry", "_eof", "_head_at", "_head_bytes", "_head_lines", "_heads", "_in_body",
                 "_inner", "_last_data", "_loop", "_parser", "_remote", "_site", "_timer", "_transport")

    def __init__(self, site, inner: asyncio.Protocol, transport: asyncio.Transport,
                 remote: str | None) -> None:
        self._site = site
        self._inner = inner
        self._transport: asyncio.Transport | None = transport
        self._remote = remote
        self._loop = site.loop
        self._parser = httptools.HttpRequestParser(self)
        self._head_at = 0.0      # when the open head began; 0.0: none is open
        self._head_bytes = 0     # of the open head, in earlier reads
        self._head_lines = 0
        self._carry = b""        # the last bytes of the open head: its blank line may straddle two reads
        self._heads = 0          # heads complete, so requests the fallback owes an answer
        self._in_body = False
        self._broken = False     # the framing is lost: no more requests
        self._eof = False
        self._last_data = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None

    def is_open(self) -> bool:
        return self._transport is not None

    # -- the tracking parser's callbacks

    def on_message_begin(self) -> None:
        self._head_at = self._loop.time()
        self._head_bytes = self._head_lines = 0

    def on_headers_complete(self) -> None:
        self._head_at = 0.0
        self._heads += 1
        self._in_body = True

    def on_message_complete(self) -> None:
        self._in_body = False

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._last_data = self._loop.time()
        if not self._broken:
            try:
                over = self._track(data)
            except httptools.HttpParserError as exc:
                if self._in_body:
                    # aiohttp would queue its 400 behind the request whose
                    # body this is, and that request waits for the rest of
                    # it for ever: it is answered here
                    self._refuse(400, f"bad request body: {exc or type(exc).__name__}", "body", owed=1)
                    return
                # a bad head: the fallback's parser answers it (400) or, if
                # it sees more in it, has the head deadline to be done with it
                self._broken = True
                self._head_at = self._last_data
                over = None
            if over is not None:
                self._refuse(*over)
                return
            if (self._head_at or self._in_body) and self._timer is None:
                self._check_time()
        self._inner.data_received(data)

    def _track(self, data: bytes) -> tuple[int, str] | None:
        """Feed ``data`` to the tracking parser; the refusal if a head is
        over a limit (checked here, before the fallback sees the bytes)."""
        view = memoryview(data)
        size = len(data)
        pos = 0
        while pos < size:
            if self._in_body:
                pos += self._feed(view[pos:])
                if pos >= size and self._head_at:
                    # a head began somewhere after the body ended: counted from the next read on
                    self._head_bytes = self._head_lines = 0
                    self._carry = bytes(view[-3:])
                continue
            # between messages or in a head: up to the next blank line, so
            # that where the head ends, and the next begins, is known
            found = data.find(b"\r\n\r\n", pos)
            stop = found + 4 if found >= 0 else -1
            carry = self._carry
            if pos == 0 and carry:
                straddle = (carry + bytes(view[:3])).find(b"\r\n\r\n")
                if 0 <= straddle < len(carry):
                    stop = straddle + 4 - len(carry)
            if stop < 0:
                self._feed(view[pos:])
                if self._head_at:
                    self._head_bytes += size - pos
                    self._head_lines += data.count(b"\n", pos)
                    self._carry = bytes(view[-3:])
                    return self._over(self._head_bytes, self._head_lines)
                return None
            start, heads = pos, self._heads
            before, lines = (self._head_bytes, self._head_lines) if self._head_at else (0, 0)
            pos += self._feed(view[pos:stop])
            if self._heads != heads:
                over = self._over(before + pos - start, lines + data.count(b"\n", start, pos))
                if over is not None:
                    self._heads = heads  # refused: the fallback never sees it
                    return over
            self._head_bytes = self._head_lines = 0
            self._carry = b""
        return None

    def _over(self, size: int, lines: int) -> tuple[int, str] | None:
        site = self._site
        if size > site.max_head:
            return site.head_too_large()
        if lines > site.max_headers + 2:  # the request line and the blank one besides
            return site.too_many_headers()
        return None

    def _feed(self, view: memoryview) -> int:
        """Feed the tracker; the bytes it took (fewer after a head that asks
        for an Upgrade or a CONNECT: llhttp stops there. The fallback serves
        no protocol but HTTP/1.1, so it refuses the upgrade and reads on: so
        does the tracker)."""
        try:
            self._parser.feed_data(view)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else 0
            if not 0 < offset <= len(view):
                raise httptools.HttpParserError("upgrade at an unknown offset") from None
            self._in_body = False
            return offset
        return len(view)

    def eof_received(self) -> bool | None:
        # A client may half-close after its last requests: with a fallback
        # that counts its answers, close once it has answered them all
        # (aiohttp alone would close at once, its answers cut off).
        if getattr(self._inner, "answered", None) is None:
            return self._inner.eof_received()
        self._eof = True
        self._inner.on_answer = self._close_when_answered
        self._close_when_answered()
        return True

    def _close_when_answered(self) -> None:
        # a message still incomplete never will be: it is owed no answer
        owed = self._heads - 1 if self._in_body else self._heads
        transport = self._transport
        if transport is not None and self._inner.answered >= owed:
            transport.close()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc) -> None:
        if self._transport is not None:
            self._transport = None
            self._site.open_connections -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parser = None
        self._inner.connection_lost(exc)

    # -- limits

    def _check_time(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        site = self._site
        now = self._loop.time()
        if self._head_at:
            due = self._head_at + site.head_timeout
            if now >= due:
                if self._broken:
                    transport.close()
                else:
                    self._refuse(*site.head_too_slow())
                return
        elif self._in_body:
            if transport.is_reading():
                due = self._last_data + site.idle_timeout
                if now >= due:
                    site.log.warning("closing a connection whose request body stalled", remote=self._remote or "",
                                     seconds=site.idle_timeout)
                    transport.close()
                    return
            else:
                due = now + site.idle_timeout  # the fallback is not reading: not the client's delay
        else:
            return  # between requests: the fallback's keep-alive timeout
        self._timer = self._loop.call_at(due, self._check_time)

    def _refuse(self, status: int, error: str, param: str = "request", owed: int = 0) -> None:
        """Answer and close; the answer only if the fallback has answered
        every request but the ``owed`` one this answer is for (else the
        answers would interleave, and closing is all that is left)."""
        site = self._site
        transport, self._transport = self._transport, None
        site.open_connections -= 1
        site.log.warning("unparseable request" if status == 400 else "refused request", remote=self._remote or "",
                         status=status, error=error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        answered = getattr(self._inner, "answered", None)
        if answered is not None and answered >= self._heads - owed and (not owed or answered < self._heads):
            # no half-close: should the fallback still answer something its
            # parser refused first, it writes into an open transport
            self._parser = None
            site.close_with(transport, site.refusal(status, error, param), then=self._inner.connection_lost,
                            half_close=False)
        else:
            transport.close()  # connection_lost still comes here, and goes on to the fallback


class Linger(asyncio.Protocol):
    """What is left of a connection after its last answer: the write side is
    shut; whatever the client still sends is read and dropped until it
    closes or :data:`LINGER` has passed."""

    __slots__ = ("_then", "_timer")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 then: Callable[[BaseException | None], None] | None) -> None:
        self._timer = loop.call_later(LINGER, transport.close)
        self._then = then

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # closes the transport

    def connection_lost(self, exc) -> None:
        self._timer.cancel()
        then, self._then = self._then, None
        if then is not None:
            then(exc)
