"""Client requests waiting on the core, as futures.

A proposal's future is keyed by request id until the core says
``Proposed(index, term)``; then by index. The entry applied at that index
resolves it: with the state machine's result if the term matches, or as
failed (the entry was replaced) if not. Leaving the leader role fails the
remaining ones as *outcome unknown*: those entries may still commit under
the next leader.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from raftkv.raft import effects as fx
from raftkv.raft.messages import Entry

from .errors import ApplyTimeout, NotLeaderError, RejectReason, RequestError

__all__ = ["PendingRequests"]

# Refusals after which nothing was done and the (next) leader can take the
# request.
_RETRY_ELSEWHERE = frozenset((RejectReason.NOT_LEADER, RejectReason.TRANSFER_IN_PROGRESS))


def _consume(fut: asyncio.Future) -> None:
    # A request whose HTTP handler gave up (timeout) is still resolved later;
    # retrieve the exception so asyncio does not report it as lost.
    if not fut.cancelled():
        fut.exception()


def _expire(fut: asyncio.Future, what: str, unknown_outcome: bool = True) -> None:
    if not fut.done():
        fut.set_exception(ApplyTimeout(f"timed out waiting for {what}", unknown_outcome=unknown_outcome))


class _CancelTimer:
    __slots__ = ("handle",)

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self.handle = handle

    def __call__(self, fut: asyncio.Future) -> None:
        self.handle.cancel()


class PendingRequests:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ids = itertools.count(1)
        self._by_id: dict[int, asyncio.Future] = {}
        self._by_index: dict[int, tuple[int, asyncio.Future]] = {}

    def register(self) -> tuple[int, asyncio.Future]:
        rid = next(self._ids)
        fut = self.loop.create_future()
        fut.add_done_callback(_consume)
        self._by_id[rid] = fut
        return rid, fut

    async def wait(self, fut: asyncio.Future, timeout: float, what: str) -> Any:
        # A handler that is cancelled cancels ``fut``; resolving skips
        # futures that are already done.
        self.expire_after(fut, timeout, what)
        return await fut

    def expire_after(self, fut: asyncio.Future, timeout: float, what: str, unknown_outcome: bool = True) -> None:
        """Fail ``fut`` with ApplyTimeout unless it is done within ``timeout``:
        one timer per request, cancelled when the future is done, no
        shield or timeout context (every write and linearizable read)."""
        handle = self.loop.call_later(timeout, _expire, fut, what, unknown_outcome)
        fut.add_done_callback(_CancelTimer(handle))

    def resolve(self, e) -> None:
        t = type(e)
        fut = self._by_id.pop(e.request_id, None)
        if fut is None:
            return
        if t is fx.Proposed:
            self._by_index[e.index] = (e.term, fut)
        elif fut.done():
            return
        elif t is fx.Rejected:
            cls = NotLeaderError if e.reason in _RETRY_ELSEWHERE else RequestError
            fut.set_exception(cls(e.error, e.unknown_outcome, e.leader_id, e.leader_address, e.reason))
        elif t is fx.ReadReady:
            fut.set_result(e.index)
        else:
            fut.set_result(None)

    def applied(self, entries: Sequence[Entry], results: list) -> None:
        by_index = self._by_index
        if not by_index:
            return
        for entry, result in zip(entries, results):
            waiting = by_index.pop(entry.index, None)
            if waiting is None:
                continue
            term, fut = waiting
            if fut.done():
                continue
            if term == entry.term:
                fut.set_result((entry.index, result))
            else:
                fut.set_exception(RequestError("the entry was replaced by a new leader's log before it committed"))

    def leadership_lost(self, leader_id: str | None, leader_address: str | None) -> None:
        pending = [f for _, f in self._by_index.values()]
        self._by_index.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(RequestError("leadership lost before the entry committed",
                                               unknown_outcome=True, leader_id=leader_id,
                                               leader_address=leader_address))

    def fail_all(self, error: RequestError) -> None:
        futures = list(self._by_id.values()) + [f for _, f in self._by_index.values()]
        self._by_id.clear()
        self._by_index.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)
