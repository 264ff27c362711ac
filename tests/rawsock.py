"""Raw-socket helpers for tests that speak to a port as an attacker would."""

from __future__ import annotations

import contextlib
import socket


def read_until_closed(sock: socket.socket, chunk: int = 65536) -> bytes:
    """Everything the other end sends until it closes (or resets) the
    connection: a test sends its bytes, half-closes, and waits for the node to
    hang up before it looks at what the node did."""
    received = bytearray()
    with contextlib.suppress(OSError):  # a reset is the node hanging up too
        while data := sock.recv(chunk):
            received += data
    return bytes(received)
