"""What every handler of a node's HTTP side works with: the context (the
node, as a :class:`~.handle.NodeHandle`, and what surrounds it), and a
request as the API sees it (:class:`Call`).

:class:`KeyValueContext` is the part of a context the data plane
(:mod:`.kv`) uses: a node's :class:`HttpContext` has it, and so has an HTTP
worker's (:class:`raftkv.http.workers.worker.WorkerContext`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web

from raftkv.config.settings import NodeSettings
from raftkv.observability.eventlog import EventRing
from raftkv.observability.metrics import NodeMetrics

from ..discovery.plan import FormingState
from .handle import KeyValueNode, NodeHandle
from .params import origin_form, query_and_body
from .registry import Registry, node_url
from .replies import Reply

__all__ = ["CTX", "Call", "HttpContext", "KeyValueContext", "call_of"]

FORWARDED_BY = "X-Raftkv-Forwarded-By"
_FORWARDED_BY_LOWER = FORWARDED_BY.lower()


@dataclass
class HttpContext:
    node: NodeHandle
    settings: NodeSettings
    client: aiohttp.ClientSession
    registry: Registry
    metrics: NodeMetrics | None
    events: EventRing
    # how a request runs on the leader (raftkv.http.api.forward.on_leader):
    # handed in, because forwarding itself needs this context
    leader_runner: Callable[..., Awaitable] | None = None
    # the node's processes with their CPU and RSS (raftkv.observability.procstat)
    processes: Callable[[], list[dict]] | None = None
    # RAFT_BOOTSTRAP_EXPECT: what this node proposes and founded (raftkv.http.discovery)
    forming: FormingState | None = None

    @property
    def id(self) -> str:
        return self.node.id

    async def on_leader(self, call: Call, local: Callable[[], Awaitable[Reply]], write: bool) -> Reply:
        """Run ``local`` on the leader: here if this node leads, else forwarded."""
        return await self.leader_runner(self, call, local, write)

    def known_leader(self) -> dict | None:
        """The leader as answers name it (``leader``), or None."""
        return self.registry.leader()

    def node_url(self, http_address: str, path: str = "") -> str:
        """``path`` on a member's HTTP API, http or https as this node serves."""
        return node_url(self.settings, http_address, path)

    @property
    def max_body(self) -> int:
        return self.settings.max_body


class KeyValueContext(Protocol):
    """What the data plane (:mod:`.kv`) calls on its context."""

    @property
    def node(self) -> KeyValueNode: ...

    @property
    def id(self) -> str:
        """The node's id, which every answer names."""

    @property
    def max_body(self) -> int:
        """``HTTP_MAX_BODY``: a key and its value together at most this many bytes."""

    async def on_leader(self, call: Call, local: Callable[[], Awaitable[Reply]], write: bool) -> Reply:
        """``local()``'s answer if this node leads, else the leader's to ``call``."""

    def known_leader(self) -> dict | None:
        """The leader as answers name it (``leader``), or None."""


CTX: web.AppKey[HttpContext] = web.AppKey("raftkv", HttpContext)


@dataclass(slots=True)
class Call:
    """One request as a route sees it, whichever server framed it: the one
    shape of a request (the fast path builds it from httptools' callbacks,
    the aiohttp adapter from a ``web.Request``: :func:`call_of`).

    ``raw_path`` is the target's path and query, as sent (the origin-form,
    never a scheme or host: forwarding appends it to a node's address).
    ``headers`` is case-insensitive (aiohttp's) or keyed by lower-case names
    (the fast path's), so lookups use lower-case names. ``body`` is what the
    server read of the body (the routes marked so in the table:
    :mod:`raftkv.http.routes`), ``content_type`` its media type (None when
    the request named none, or sent no body), ``match`` the variables of the
    route's path (``/key/{key}``)."""
    method: str
    raw_path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    remote: str | None
    body: bytes = b""
    content_type: str | None = None
    match: Mapping[str, str] | None = None

    def params(self) -> Mapping[str, str]:
        """The query's parameters, plus those of a form or JSON body."""
        return query_and_body(self.query, self.body, self.content_type)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def forwarded(self) -> bool:
        return self.headers.get(_FORWARDED_BY_LOWER) is not None

    def client_host(self) -> str | None:
        """The caller's IP; for a request forwarded by a peer, or relayed by
        one of this node's HTTP workers over the local socket (no peer
        address), the original caller's."""
        if self.forwarded or not self.remote:
            first = (self.headers.get("x-forwarded-for") or "").split(",")[0].strip()
            if first:
                return first
        return self.remote


def call_of(request: web.Request, body: bytes = b"") -> Call:
    """aiohttp's request as a :class:`Call` (``body``: what was read of it)."""
    # raw_path is the target as sent: an absolute-form one holds a scheme and host
    content_type = request.content_type if body and "Content-Type" in request.headers else None
    return Call(request.method, origin_form(request.raw_path), request.query, request.headers, request.remote, body,
                content_type, request.match_info)
