"""The aiohttp application of a node's HTTP port (the fast path hands it
every request it does not serve itself: :mod:`raftkv.http.service`).

The app serves every row of the route table (:mod:`raftkv.http.routes`):
an API row through :func:`api_handler`, which builds the request's
:class:`~raftkv.http.api.context.Call` (its body read first where the row
says so), calls the route's function and answers its Reply, awaiting a
Pending one; an ``aiohttp`` row is mounted as it is. Its middlewares,
outermost first: request metrics and CORS (:mod:`raftkv.http.pages.dashboard`),
errors to JSON answers and the refusal of a path, query or header that is
not UTF-8 (here), the cluster key on admin routes (:mod:`raftkv.http.api.admin`).
The port's limits are :mod:`.limits`'.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from raftkv.observability import hclog

from ..api import admin
from ..api.context import CTX, FORWARDED_BY, Call, HttpContext, call_of
from ..api.params import BadRequest, TooLarge, check_path, origin_form, parse_query
from ..api.replies import Pending, Reply, error_reply, json_reply, respond
from ..pages import dashboard, learn
from ..routes import ROUTES, Route

http_log = hclog.get_logger("http")

__all__ = ["api_handler", "check_input", "create_app", "errors_middleware", "mount", "read_body",
           "strict_input_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- middleware -------------------------------------------------------------------

# the headers raftkv reads; aiohttp decodes any header as UTF-8 with
# surrogate escapes, which cannot be forwarded, compared or answered
_READ_HEADERS = ("Authorization", "Content-Type", "X-Forwarded-For", FORWARDED_BY, "Last-Event-ID")


def check_input(request: web.BaseRequest) -> None:
    """BadRequest for a path, query or read header that is not UTF-8:
    aiohttp's decoding would replace the bad bytes (``%ff`` and ``%fe``
    both becoming U+FFFD, the same key)."""
    target = origin_form(request.raw_path)
    path, _, query = target.partition("?")
    check_path(path)
    if query:
        parse_query(query.encode("utf-8", "surrogateescape"))
    headers = request.headers
    for name in _READ_HEADERS:
        value = headers.get(name)
        if value is not None and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(name, f"header {name} is not valid UTF-8") from None


@web.middleware
async def strict_input_middleware(request: web.Request, handler) -> web.StreamResponse:
    check_input(request)
    return await handler(request)


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    ctx: HttpContext = request.app[CTX]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            limit = ctx.max_body
            return respond(json_reply(ctx.id, {"error": f"request body over the limit of {limit} bytes",
                                               "param": "body", "limit": limit}, 413))
        return respond(json_reply(ctx.id, {"error": (exc.reason or "error").lower()}, exc.status))
    except asyncio.CancelledError:
        raise
    except ConnectionResetError as exc:
        # the client went away mid-request (aiohttp's "Connection lost"): the
        # answer reaches nobody, and is no error of ours
        http_log.debug("client closed the connection", method=request.method, path=request.path, error=str(exc))
        return respond(json_reply(ctx.id, {"error": "the connection was closed"}, 400))
    except web.RequestPayloadError as exc:
        # the body broke off or its chunked framing is bad: the client's fault
        cause = exc.__cause__ or exc.__context__
        text = (str(cause) if cause is not None else str(exc)).split("\n", 1)[0].rstrip(": ")
        return respond(json_reply(ctx.id, {"error": f"bad request body: {text}", "param": "body"}, 400))
    except Exception as exc:
        reply = error_reply(ctx.id, exc, ctx.registry.leader())
        if reply is not None:
            return respond(reply)
        http_log.error("internal error serving request", method=request.method, path=request.path,
                       error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return respond(json_reply(ctx.id, {"error": f"internal error: {type(exc).__name__}"}, 500))


# --- the routes ------------------------------------------------------------------

async def read_body(request: web.Request) -> bytes:
    """The request's body, refused (413) over ``HTTP_MAX_BODY``."""
    limit = request.app[CTX].max_body
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge("body", request.content_length, limit)
    return await request.read()


def api_handler(fn: Callable[[HttpContext, Call], Reply | Pending], reads_body: bool) -> Handler:
    """An API route's function as an aiohttp handler."""
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await read_body(request) if reads_body and request.can_read_body else b""
        outcome = fn(request.app[CTX], call_of(request, body))
        if outcome.__class__ is not Reply:
            outcome = await outcome
        return respond(outcome)
    return handle


def mount(app: web.Application, table: Iterable[Route]) -> None:
    """Add the routes of ``table`` to the app's router."""
    for route in table:
        handler = route.fn if route.aiohttp else api_handler(route.fn, route.body)
        if route.method == "GET" and route.head:
            app.router.add_route("HEAD", route.path, handler)
        app.router.add_route(route.method, route.path, handler)


def create_app(ctx: HttpContext) -> web.Application:
    app = web.Application(middlewares=[dashboard.observe_middleware, errors_middleware, strict_input_middleware,
                                       admin.require_cluster_key],
                          client_max_size=ctx.max_body)
    app[CTX] = ctx
    dashboard.prepare(app)
    learn.prepare(app)
    mount(app, ROUTES)
    return app
