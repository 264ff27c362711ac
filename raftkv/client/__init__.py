"""raftkv's Python client: ``Client`` (synchronous, the standard library
alone) and ``AsyncClient`` (asyncio, on aiohttp), the same calls on both.

    from raftkv.client import Client
    with Client(["10.0.0.1:8000", "10.0.0.2:8000"]) as kv:
        kv.set("user", "kj")
        kv.get("user")                 # "kj"; None once deleted

Each call finds the leader, retries what did nothing through an election
(exponential backoff, one deadline: ``timeout``) and fails with a typed
error that says whether it is safe to repeat: a :class:`NotApplied` is, an
:class:`OutcomeUnknown` (a write that may have been applied) is not.
docs/client.md has the whole story.

The modules: :mod:`.core` (finding the leader, the retry decision, the
deadline: written once, no IO), :mod:`.errors` (the error types and the
answer-to-error table), :mod:`.operations` (the calls), :mod:`.sync` and
:mod:`.aio` (the two drivers). ``AsyncClient`` is imported on first use,
so a program using ``Client`` never loads aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BadRequest,
    Conflict,
    NotApplied,
    NotFound,
    OutcomeUnknown,
    RaftkvError,
    ServerError,
    Timeout,
    TimeoutNotApplied,
    TimeoutOutcomeUnknown,
    TLSError,
    TooLarge,
    Unauthorized,
    Unavailable,
    WriteOutcomeUnknown,
)
from .operations import LEVELS
from .sync import Client

if TYPE_CHECKING:
    from .aio import AsyncClient

__all__ = ["LEVELS", "AsyncClient", "BadRequest", "Client", "Conflict", "NotApplied", "NotFound", "OutcomeUnknown",
           "RaftkvError", "ServerError", "TLSError", "Timeout", "TimeoutNotApplied", "TimeoutOutcomeUnknown",
           "TooLarge", "Unauthorized", "Unavailable", "WriteOutcomeUnknown"]


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from .aio import AsyncClient
        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
