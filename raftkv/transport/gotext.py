"""What the transports say: Go's error texts and the shared WARN lines.

Theory of operation
-------------------
raftkv's logs read like a hashicorp/raft node's, so an operator who knows
one knows the other, and the mixed-cluster tests compare the two. A failed
dial or read is therefore printed the way Go's ``net`` package prints it
(``dial tcp 127.0.0.1:9001: connect: connection refused``, ``EOF``,
``read tcp a->b: connection reset by peer``): :func:`dial_error_text` and
:func:`io_error_text` turn a Python exception into that text, and
:func:`tls_error_text` trims OpenSSL's.

Both transports refuse a connection beyond ``max_connections`` with the same
WARN line (:data:`OVER_LIMIT_MESSAGE`, :func:`over_limit_fields`), and
:class:`OverLimitLines` decides when it is written: a flood costs one line
per ``log_interval`` with the number refused since the last, not a line per
connection. TcpTransport counts refused snapshot streams from strangers the
same way.

The lines about failed RPCs (``failed to heartbeat to`` ...) belong to the
outbound channels and live with them, in :mod:`.channel`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from raftkv.config.textforms import split_host_port

__all__ = ["OVER_LIMIT_MESSAGE", "OverLimitLines", "dial_error_text", "io_error_text", "over_limit_fields",
           "tls_error_text"]

OVER_LIMIT_MESSAGE = "too many connections, closing new ones"


def dial_error_text(address: str, exc: BaseException) -> str:
    """A dial failure in Go's words, so logs read like hashicorp's."""
    if isinstance(exc, ValueError):
        return f"dial tcp: {exc}"
    if isinstance(exc, socket.gaierror):
        try:
            host = split_host_port(address)[0]
        except ValueError:
            host = address
        return f"dial tcp: lookup {host}: no such host"
    if isinstance(exc, TimeoutError):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return f"dial tcp {address}: connect: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return f"dial tcp {address}: {exc}"


def io_error_text(op: str, local: str, remote: str, exc: BaseException) -> str:
    """A read/write failure on an established connection, in Go's words."""
    if isinstance(exc, asyncio.IncompleteReadError) or isinstance(exc, EOFError):
        return "EOF"
    if isinstance(exc, TimeoutError):
        what = "i/o timeout"
    elif isinstance(exc, BrokenPipeError):
        what = f"{op}: broken pipe"
    elif isinstance(exc, ConnectionResetError):
        what = f"{op}: connection reset by peer"
    elif isinstance(exc, OSError) and exc.strerror:
        what = f"{op}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    else:
        what = f"{op}: {exc or type(exc).__name__}"
    return f"{op} tcp {local}->{remote}: {what}"


def tls_error_text(e: BaseException) -> str:
    """A failed TLS handshake, for ``refused connection`` (after ``tls: ``)."""
    if isinstance(e, ssl.SSLError):
        # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ..." without "(_ssl.c:1006)"
        text = str(e.args[1]) if len(e.args) > 1 else str(e)
        return text.rsplit(" (_ssl.c:", 1)[0]
    if isinstance(e, TimeoutError):
        return "handshake timed out"
    return str(e) or type(e).__name__


class OverLimitLines:
    """The WARN line for connections closed over ``max_connections``: the
    first at once, then at most one per ``interval``, each counting the
    refusals since the previous line."""

    __slots__ = ("interval", "logged", "logged_at", "refused")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.refused = 0      # over the transport's life
        self.logged = 0       # of those, reported in a line so far
        self.logged_at: float | None = None

    def refuse(self, now: float) -> int | None:
        """Count one refusal; the number to report if a line is due now."""
        self.refused += 1
        if self.logged_at is not None and now - self.logged_at < self.interval:
            return None
        self.logged_at = now
        count, self.logged = self.refused - self.logged, self.refused
        return count


def over_limit_fields(limit: int, remote: str, refused: int) -> list[tuple[str, object]]:
    return [("limit", limit), ("remote-address", remote), ("refused", refused)]
