"""What every handler of a node's HTTP side works with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from raftkv.config import NodeSettings
from raftkv.eventlog import EventRing
from raftkv.metrics import NodeMetrics
from raftkv.node.runtime import Node

from .registry import Registry

__all__ = ["CTX", "Call", "HttpContext", "call_of"]

FORWARDED_BY = "X-Raftkv-Forwarded-By"
_FORWARDED_BY_LOWER = FORWARDED_BY.lower()


@dataclass
class HttpContext:
    node: Node
    settings: NodeSettings
    client: aiohttp.ClientSession
    registry: Registry
    metrics: NodeMetrics | None
    events: EventRing

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def max_body(self) -> int:
        return self.settings.max_body


CTX: web.AppKey[HttpContext] = web.AppKey("raftkv", HttpContext)


@dataclass(slots=True)
class Call:
    """One request as the data plane sees it, whichever server framed it.
    ``headers`` is case-insensitive (aiohttp's) or keyed by lower-case names
    (the fast path's), so lookups use lower-case names."""
    method: str
    raw_path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    remote: str | None
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def forwarded(self) -> bool:
        return self.headers.get(_FORWARDED_BY_LOWER) is not None

    def client_host(self) -> str | None:
        """The caller's IP; for a request forwarded by a peer, the original caller's."""
        if self.forwarded:
            first = (self.headers.get("x-forwarded-for") or "").split(",")[0].strip()
            if first:
                return first
        return self.remote


def call_of(request: web.Request, body: bytes = b"") -> Call:
    return Call(request.method, request.raw_path, request.query, request.headers, request.remote, body)
