"""Admin HTTP routes that are not part of the key-value API: ``/debug/faults``.

Theory of operation
-------------------
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

from aiohttp import web

from .transport.faults import FaultSpecError, parse_fault_spec

__all__ = ["add_admin_routes"]


def _server(request: web.Request):
    from .api import APP_SERVER
    return request.app[APP_SERVER]


def _forbidden(server) -> web.Response:
    from .api import _json
    return _json(server, {"error": "fault injection is disabled on this node "
                                   "(start it with --enable-fault-injection or RAFT_FAULT_INJECTION=true)"},
                 403)


async def handle_faults(request: web.Request) -> web.StreamResponse:
    from .api import BadRequest, _body, _json, parse_json_object
    server = _server(request)
    faults = server.faults
    if faults is None:
        return _forbidden(server)
    if request.method == "DELETE":
        healed = faults.clear()
        return _json(server, {"healed": healed, **faults.describe()})
    if request.method == "POST":
        body = await _body(request)
        if not body.strip():
            raise BadRequest("body", "missing JSON body, e.g. {\"drop\": [\"n2\"]} or {\"delay_ms\": 100}")
        try:
            rules = parse_fault_spec(parse_json_object(body))
        except FaultSpecError as exc:
            raise BadRequest(exc.param, exc.message) from None
        added = faults.add(rules)
        now = faults.clock()
        return _json(server, {"added": [r.to_dict(now) for r in added], **faults.describe()})
    return _json(server, faults.describe())


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/debug/faults", handle_faults)
    r.add_post("/debug/faults", handle_faults)
    r.add_delete("/debug/faults", handle_faults)
