"""Admin HTTP concerns: ``/debug/faults`` and the cluster-key gate.

Theory of operation
-------------------
With ``RAFT_CLUSTER_KEY`` set, :func:`require_cluster_key` admits requests
to the admin routes -- membership (``/join``, ``/remove-peer``,
``/transfer-leadership``), ``/restore``, ``/snapshot``, ``/debug/*`` and the
internal ``/_raftkv/*`` registry -- only with ``Authorization: Bearer
<key>`` (compared in constant time). Anything else gets 401 and a ``WARN
http: refused admin request`` line naming the caller. Key-value routes and
``/status``, ``/peers``, ``/metrics`` stay open. Without a key nothing is
checked, as before. Nodes send the token themselves when they join
(``RAFT_JOIN``) or register, and forwarding to the leader passes it on.

``/debug/faults`` drives the transport's :class:`~raftkv.transport.faults.FaultInjector`
on *this* node only (never forwarded: a fault is local by nature):

* ``GET`` lists the active rules and drop/delay counters;
* ``POST`` adds rules from a JSON body (see :mod:`raftkv.transport.faults`);
* ``DELETE`` removes them all (heals).

The routes exist only when the node was started with
``--enable-fault-injection`` / ``RAFT_FAULT_INJECTION=true``; otherwise every
method answers 403, so a production node can never be partitioned over HTTP.
``/status`` says which it is (``"fault_injection": true|false``).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from raftkv import hclog
from raftkv.transport.faults import FaultSpecError, parse_fault_spec

from .context import CTX, HttpContext, call_of
from .params import BadRequest, parse_json_object
from .replies import json_reply
from .routes import read_body, respond

http_log = hclog.get_logger("http")

__all__ = ["ADMIN_PREFIXES", "add_admin_routes", "is_admin_path", "require_cluster_key"]

ADMIN_PREFIXES = ("/join", "/remove-peer", "/transfer-leadership", "/restore", "/snapshot",
                  "/debug/", "/_raftkv/")


def is_admin_path(path: str) -> bool:
    for prefix in ADMIN_PREFIXES:
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return True
    return False


@web.middleware
async def require_cluster_key(request: web.Request, handler) -> web.StreamResponse:
    ctx: HttpContext = request.app[CTX]
    key = ctx.settings.cluster_key
    if not key or not is_admin_path(request.path):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), key.encode("utf-8")):
        return await handler(request)
    http_log.warn("refused admin request", method=request.method, path=request.path,
                  remote=call_of(request).client_host() or "",
                  error="wrong cluster key" if header else "no cluster key")
    resp = respond(json_reply(ctx.id, {"error": "this route needs the cluster key: "
                                                 "Authorization: Bearer <RAFT_CLUSTER_KEY>"}, 401))
    resp.headers["WWW-Authenticate"] = 'Bearer realm="raftkv"'
    return resp


def _forbidden(ctx: HttpContext) -> web.Response:
    return respond(json_reply(ctx.id, {"error": "fault injection is disabled on this node (start it with "
                                                "--enable-fault-injection or RAFT_FAULT_INJECTION=true)"}, 403))


async def handle_faults(request: web.Request) -> web.StreamResponse:
    ctx: HttpContext = request.app[CTX]
    faults = ctx.node.faults
    if faults is None:
        return _forbidden(ctx)
    if request.method == "DELETE":
        healed = faults.clear()
        return respond(json_reply(ctx.id, {"healed": healed, **faults.describe()}))
    if request.method == "POST":
        body = await read_body(request)
        if not body.strip():
            raise BadRequest("body", "missing JSON body, e.g. {\"drop\": [\"n2\"]} or {\"delay_ms\": 100}")
        try:
            rules = parse_fault_spec(parse_json_object(body))
        except FaultSpecError as exc:
            raise BadRequest(exc.param, exc.message) from None
        added = faults.add(rules)
        now = faults.clock()
        return respond(json_reply(ctx.id, {"added": [r.to_dict(now) for r in added], **faults.describe()}))
    return respond(json_reply(ctx.id, faults.describe()))


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/debug/faults", handle_faults)
    r.add_post("/debug/faults", handle_faults)
    r.add_delete("/debug/faults", handle_faults)
