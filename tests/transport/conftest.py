"""Shared helpers for the transport tests: things to wait on, not sleep for.

Every recorder notifies one ``Watch``; a test awaits ``watch.until(cond)``,
which re-checks ``cond`` on each notification and fails after a generous
timeout instead of hanging. ``transports`` starts TCP transports on
127.0.0.1 with OS-chosen ports and closes every one in teardown. The TCP tests run on both the stdlib loop and uvloop
(which the server uses), since the two differ in socket details.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any, Callable

import pytest
import uvloop

from raftkv.transport.options import TransportOptions
from raftkv.transport.raftkv_protocol.tcp import TcpTransport

TIMEOUT = 15.0


def pytest_asyncio_loop_factories(config, item):
    if item.path.name in ("test_tcp_transport.py", "test_tls_transport.py"):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


class Watch:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def until(self, cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Return once ``cond()`` holds; re-checked on every notification and,
        for state nobody notifies about (transport internals), every 20ms."""
        async with asyncio.timeout(timeout):
            while not cond():
                self._event.clear()
                with contextlib.suppress(TimeoutError):  # re-check the condition
                    await asyncio.wait_for(self._event.wait(), 0.02)


class Inbox:
    """A handler that records (from_id, message) pairs."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.items: list[tuple[str, Any]] = []

    def __call__(self, from_id: str, message: Any) -> None:
        self.items.append((from_id, message))
        self.watch.notify()

    def of(self, kind: type) -> list[Any]:
        return [m for _, m in self.items if type(m) is kind]


class LogRecorder:
    """A ``log`` callable that records (level, logger, message, fields)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.lines: list[tuple[str, str, str, dict[str, object]]] = []

    def __call__(self, level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None:
        self.lines.append((level, logger, message, dict(fields)))
        self.watch.notify()

    def find(self, message: str) -> list[tuple[str, str, str, dict[str, object]]]:
        return [line for line in self.lines if line[2] == message]


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def make_inbox(watch: Watch) -> Callable[[], Inbox]:
    return lambda: Inbox(watch)


OPTIONS = frozenset(f.name for f in dataclasses.fields(TransportOptions))


def split_options(kwargs: dict[str, Any]) -> tuple[TransportOptions, dict[str, Any]]:
    """A transport's keyword arguments as (options, the callbacks)."""
    options = TransportOptions(**{k: v for k, v in kwargs.items() if k in OPTIONS})
    return options, {k: v for k, v in kwargs.items() if k not in OPTIONS}


@pytest.fixture
async def transports(watch: Watch):
    """Factory: ``await transports("n1")`` -> (transport, inbox, log); keyword
    arguments are TransportOptions fields or the constructor's callbacks."""
    made: list[TcpTransport] = []

    async def make(node_id: str, port: int = 0, **kwargs: Any) -> tuple[TcpTransport, Inbox, LogRecorder]:
        inbox = Inbox(watch)
        log = LogRecorder(watch)
        options, callbacks = split_options(kwargs)
        t = TcpTransport(node_id, "127.0.0.1", port, inbox, options, log=log, **callbacks)
        made.append(t)
        await t.start()
        return t, inbox, log

    yield make
    for t in made:
        await t.close()
