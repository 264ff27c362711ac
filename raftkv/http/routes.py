"""Every route of a node's HTTP port, in one table.

Both servers read :data:`ROUTES`. aiohttp (:func:`raftkv.http.server.app.create_app`)
serves every row; the fast path (:mod:`raftkv.http.server.fastpath`) serves
the rows marked ``fast`` -- on a node and on each HTTP worker -- and hands
any other request to aiohttp.

A route is one function ``fn(ctx, call)`` from the context and the parsed
request (:class:`~raftkv.http.api.context.Call`) to a
:class:`~raftkv.http.api.replies.Reply`, or a
:class:`~raftkv.http.api.replies.Pending` one when the answer waits on the
node or on the leader. It raises what the request fails with; each server
answers that through :func:`~raftkv.http.api.replies.error_reply`. The
servers are adapters only: the fast path builds the ``Call`` from
httptools' callbacks and writes the answer itself; aiohttp builds it from
its request (reading the body for the rows marked ``body``) and answers
through its middlewares (metrics and CORS, errors, strict input, the
cluster key).

The rows marked ``aiohttp`` are aiohttp handlers instead (``web.Request`` to
``web.StreamResponse``): they stream (a backup, an upload, server-sent
events) or serve the pages, and only aiohttp serves them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .api import admin, cluster, kv
from .api.context import Call
from .api.replies import Pending, Reply
from .discovery import routes as discovery
from .pages import dashboard, learn, learn_live

__all__ = ["ROUTES", "Route", "fast_routes"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str             # aiohttp's form: {name} or {name:regex} is a variable of the path (call.match)
    fn: Callable[..., Any]
    fast: bool = False    # the fast path serves it too (a GET without a body, HTTP/1.1)
    body: bool = False    # aiohttp reads the body into call.body first (413 over HTTP_MAX_BODY)
    head: bool = True     # a GET answers HEAD too (aiohttp: the GET without its body); not one that writes
    aiohttp: bool = False  # fn is an aiohttp handler: request -> web.StreamResponse


ROUTES: list[Route] = [
    # keys (api/kv.py); the seed demo's GET forms write too
    Route("GET", "/get", kv.handle_get, fast=True),
    Route("GET", "/set", kv.handle_set, fast=True, head=False),
    Route("POST", "/set", kv.handle_set, body=True),
    Route("GET", "/remove", kv.handle_remove, head=False),
    Route("POST", "/remove", kv.handle_remove, body=True),
    Route("DELETE", "/remove", kv.handle_remove, body=True),
    # hraftd's key routes (api/kv.py)
    Route("POST", "/key", kv.handle_key_post, body=True),
    Route("GET", "/key/{key:.+}", kv.handle_key_get),
    Route("DELETE", "/key/{key:.+}", kv.handle_key_delete),
    # the cluster (api/cluster.py)
    Route("GET", "/join", cluster.handle_join, head=False),
    Route("POST", "/join", cluster.handle_join, body=True),
    Route("POST", "/remove-peer", cluster.handle_remove_peer, body=True),
    Route("DELETE", "/remove-peer", cluster.handle_remove_peer, body=True),
    Route("GET", "/transfer-leadership", cluster.handle_transfer, head=False),
    Route("POST", "/transfer-leadership", cluster.handle_transfer, body=True),
    Route("POST", "/_raftkv/register", cluster.handle_register, body=True),
    # a cluster forming itself, and a member moved to a new address (discovery/routes.py)
    Route("GET", "/_raftkv/discovery", discovery.handle_discovery),
    Route("POST", "/_raftkv/rejoin", discovery.handle_rejoin, body=True),
    Route("GET", "/status", cluster.handle_status),
    Route("GET", "/peers", cluster.handle_peers),
    Route("GET", "/readyz", cluster.handle_readyz),
    # snapshots, backup, restore and fault injection (api/admin.py, which also gates the admin routes)
    Route("POST", "/snapshot", admin.handle_snapshot),
    Route("GET", "/snapshot", admin.handle_backup, aiohttp=True),
    Route("POST", "/restore", admin.handle_restore, aiohttp=True),
    Route("GET", "/debug/faults", admin.handle_faults),
    Route("POST", "/debug/faults", admin.handle_faults, body=True),
    Route("DELETE", "/debug/faults", admin.handle_faults),
    # metrics, the dashboard and what it reads (pages/dashboard.py)
    Route("GET", "/metrics", dashboard.handle_metrics, aiohttp=True),
    Route("GET", "/ui", dashboard.handle_ui, aiohttp=True),
    Route("GET", "/ui/", dashboard.handle_ui, aiohttp=True),
    Route("GET", "/ui/static/{name}", dashboard.handle_static, aiohttp=True),
    Route("GET", "/ui/replay", dashboard.handle_replay, aiohttp=True),
    Route("POST", "/ui/replay", dashboard.handle_replay_upload, aiohttp=True),
    Route("GET", "/ui/stream", dashboard.handle_ui_stream, aiohttp=True),
    Route("POST", "/ui/faults", dashboard.handle_faults, aiohttp=True),
    Route("DELETE", "/ui/faults", dashboard.handle_faults, aiohttp=True),
    Route("GET", "/debug/stream", dashboard.handle_stream, aiohttp=True),
    Route("GET", "/debug/events", dashboard.handle_events, aiohttp=True),
    Route("GET", "/debug/log", dashboard.handle_log, aiohttp=True),
    # the learning page: its simulator (pages/learn.py) and the live cluster (pages/learn_live.py)
    Route("GET", "/ui/learn", learn.handle_page, aiohttp=True),
    Route("GET", "/ui/learn/lessons", learn.handle_lessons, aiohttp=True),
    Route("POST", "/ui/learn/sim", learn.handle_new, aiohttp=True),
    Route("GET", "/ui/learn/sim/{id}", learn.handle_summary, aiohttp=True),
    Route("GET", "/ui/learn/sim/{id}/frames", learn.handle_frames, aiohttp=True),
    Route("POST", "/ui/learn/sim/{id}/act", learn.handle_act, aiohttp=True),
    Route("POST", "/ui/learn/sim/{id}/branch", learn.handle_branch, aiohttp=True),
    Route("GET", "/ui/learn/sim/{id}/check", learn.handle_check, aiohttp=True),
    Route("GET", "/ui/learn/source", learn.handle_source, aiohttp=True),
    Route("GET", "/ui/learn/live", learn_live.handle_live, aiohttp=True),
    Route("GET", "/debug/steps", learn_live.handle_steps, aiohttp=True),
]


def fast_routes(ctx: Any) -> dict[tuple[str, str], Callable[[Call], Reply | Pending]]:
    """The fast path's routes, bound to ``ctx`` (a node's context, or an
    HTTP worker's: the fast rows are the data plane's, which needs no more
    than a :class:`~raftkv.http.api.context.KeyValueContext`)."""
    return {(r.method, r.path): functools.partial(r.fn, ctx) for r in ROUTES if r.fast}
