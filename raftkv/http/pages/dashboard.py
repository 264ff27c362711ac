"""The dashboard's HTTP side: ``/ui``, ``/metrics`` and the ``/debug`` views.

Theory of operation: the page (``raftkv/ui/``, static files, no external
resources) is served by every node, and talks to the node that served it,
over relative URLs: behind Docker, a tunnel or a reverse proxy the
browser may reach that one node and none of the addresses the members know
each other by. It reads the member list from ``/peers`` and opens one
server-sent-events stream per member at ``/ui/stream?node=ID``: for its own
id the serving node answers with its own ``/debug/stream``; for any other
member it opens that member's ``/debug/stream`` at the HTTP address in the
registry and relays the bytes as they come (see :func:`handle_ui_stream`).
A stream carries that node's status, the tail of its Raft log (index and
term of each entry) and its recent hclog records from the node's
:class:`~raftkv.observability.eventlog.EventRing`. Anything that changes state goes
through the serving node too: writes, reads and leadership transfer use the
ordinary API (followers forward to the leader), and fault injection on
another node goes through ``/ui/faults?node=ID``, which relays to that
node's ``/debug/faults``.

When the serving node stops answering (the demo kills the leader, which
served the page), the page carries on through another member: it reads that
member's ``/status``, ``/peers`` and ``/ui/stream`` at the member's own HTTP
address, as a page of another origin. ``/ui/stream`` and ``/ui/replay`` let
such a page read them (CORS, GET only, :func:`member_origin`) when it comes
from a member's own HTTP address: the relay reaches into members the browser
itself may not reach, so it is not opened to any page on the web. The
``/debug`` views, ``/status``, ``/peers`` and ``/metrics`` keep answering with
``Access-Control-Allow-Origin: *`` for other clients (a page of one's own,
scripts) that do reach every node; nothing that changes state answers
another origin.

Replay mode runs one deterministic simulator scenario on a worker thread
(``/ui/replay?scenario=NAME``, see :mod:`raftkv.sim.playback.record`) and returns
every step's node states, messages and log lines; the page steps through them
with the same views. It also opens step traces that nodes recorded with
``RAFT_TRACE``: the page uploads them (``POST /ui/replay``), this node
replays them through a fresh core (:mod:`raftkv.sim.playback.replay`) and answers
the same kind of document, one step per driver batch, with any divergence
as the step's note.

Routes:

==============================  ====================================================
``GET /ui``                      the dashboard page
``GET /ui/static/{name}``        its script and stylesheet
``GET /ui/replay[?scenario=N]``  the scenario list, or one scenario's recorded steps
``POST /ui/replay``              replay uploaded RAFT_TRACE files (form fields ``trace``)
``GET /ui/stream?node=ID``       that member's ``/debug/stream``, relayed by this node (CORS: members' pages)
``POST|DELETE /ui/faults?node``  relay to that node's ``/debug/faults``
``GET /metrics``                 Prometheus text (:mod:`raftkv.observability.metrics`)
``GET /debug/stream``            server-sent events: ``hello``, ``status``, ``log``
``GET /debug/events?since=N``    this node's recent log records after sequence N
``GET /debug/log?from=N``        index/term/type of log entries from N
==============================  ====================================================
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import tempfile
import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from raftkv.config.textforms import split_host_port
from raftkv.node.trace import TraceError
from raftkv.observability.metrics import CONTENT_TYPE_LATEST
from raftkv.sim.playback import record
from raftkv.sim.playback.replay import replay_document

from ..api.cluster import peers_view, status_view
from ..api.context import CTX, HttpContext
from ..api.params import BadRequest

__all__ = ["CORS_PATHS", "MEMBER_CORS_PATHS", "log_window", "member_origin", "observe_middleware", "prepare"]

REPLAYS: web.AppKey[dict] = web.AppKey("replays", dict)

CORS_PATHS = ("/status", "/peers", "/metrics", "/debug/stream", "/debug/events", "/debug/log")
MEMBER_CORS_PATHS = ("/ui/stream", "/ui/replay")  # readable by the members' own pages only
MEMBER_CORS_MAX_AGE = "600"  # seconds a browser may keep a preflight's answer
STREAM_INTERVAL = 0.2      # seconds between looks at the node, per stream
STREAM_KEEPALIVE = 1.0     # send status at least this often, changed or not
LOG_WINDOW = 300           # entries of the log tail a stream sends at most
BACKLOG = 500              # log records a new stream starts with
MAX_TRACE_UPLOAD = 64 * 1024 * 1024  # bytes of trace files one replay may upload
_STATIC = {"dashboard.js": "application/javascript", "dashboard.css": "text/css",
           "learn.js": "application/javascript", "learn.css": "text/css"}


def _ctx(request: web.Request) -> HttpContext:
    return request.app[CTX]


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(body) + "\n", status=status, content_type="application/json")


def _int_param(request: web.Request, name: str, default: int, lo: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"invalid {name} {raw!r}: expected a whole number") from None
    if value < lo:
        raise BadRequest(name, f"invalid {name} {raw!r}: must be at least {lo}")
    return value


# --- the members' pages (CORS) ----------------------------------------------------------

def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def member_origin(request: web.Request) -> str | None:
    """The request's ``Origin`` when it is a page of one of the members: the
    scheme this cluster serves and a member's HTTP port, under the host the
    registry has for that member; or a loopback name for a member registered
    on loopback (``localhost:8000`` is ``127.0.0.1:8000``: the demo's page
    is opened as localhost); or the host this very request was addressed to
    (a tunnel or Docker's published ports bring every member's port to the
    one host the browser knows). None otherwise."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    ctx = _ctx(request)
    try:
        url = urlsplit(origin)
        port = url.port
    except ValueError:
        return None
    host = (url.hostname or "").lower()
    if url.scheme != ctx.settings.http_scheme or not host or url.path not in ("", "/"):
        return None
    port = port or (443 if url.scheme == "https" else 80)
    # A worker relays over a unix socket and names no Host of the caller's.
    asked = ""
    if request.remote:
        try:
            asked = split_host_port(request.host)[0].strip("[]").lower()
        except ValueError:
            asked = ""
    node = ctx.node
    ids = {s.id for s in node.configuration.servers} | {ctx.id}
    for member in ids:
        address = ctx.registry.http_address_of(member)
        if not address:
            continue
        try:
            mhost, mport = split_host_port(address)
        except ValueError:
            continue
        if not mport.isdigit() or int(mport) != port:
            continue
        mhost = mhost.lower()
        if host == mhost or (_is_loopback(host) and _is_loopback(mhost)) or host == asked:
            return origin
    return None


def member_cors_headers(request: web.Request) -> dict[str, str]:
    """Headers that let a member's page (:func:`member_origin`) read the answer."""
    origin = member_origin(request)
    if origin is None:
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _preflight(request: web.Request) -> web.Response:
    """Answer a CORS preflight for a member's page: GET, with the header a
    reconnecting EventSource sends."""
    headers = member_cors_headers(request)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({"Access-Control-Allow-Methods": "GET", "Access-Control-Allow-Headers": "Last-Event-ID",
                        "Access-Control-Max-Age": MEMBER_CORS_MAX_AGE})
        return web.Response(status=204, headers=headers)
    return _json({"error": "only the pages of this cluster's members may read this route from another origin",
                  "served_by": _ctx(request).id}, 403)


# --- middlewares ----------------------------------------------------------------------

@web.middleware
async def observe_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Per-request bookkeeping in one layer (every layer costs each request):
    count and time the request, and let a dashboard served by another member
    read this node's views (CORS)."""
    t0 = time.perf_counter()
    status = 500
    try:
        if request.method == "OPTIONS" and request.path in MEMBER_CORS_PATHS:
            resp = _preflight(request)
        else:
            resp = await handler(request)
        status = resp.status
        if request.method in ("GET", "HEAD") and not resp.prepared:
            if request.path in CORS_PATHS:
                resp.headers["Access-Control-Allow-Origin"] = "*"
            elif request.path in MEMBER_CORS_PATHS:
                resp.headers.update(member_cors_headers(request))
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[CTX].metrics
        if metrics is not None:
            resource = request.match_info.route.resource
            metrics.http_request(resource.canonical if resource is not None else "unmatched",
                                 request.method, status, time.perf_counter() - t0)


# --- /metrics and /debug -----------------------------------------------------------------

async def handle_metrics(request: web.Request) -> web.StreamResponse:
    metrics = request.app[CTX].metrics
    resp = web.Response(body=metrics.render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def handle_events(request: web.Request) -> web.StreamResponse:
    ring = request.app[CTX].events
    since = _int_param(request, "since", 0)
    limit = _int_param(request, "limit", BACKLOG, 1)
    return _json({"node": ring.node_id, "last_seq": ring.last_seq, "events": ring.since(since, limit)})


def _entry_type(entry) -> str:
    return entry.type.name.lower()


def log_window(log, lo: int, hi: int) -> list[list]:
    """``[index, term, type]`` of the entries lo..hi the node's log still holds."""
    return [[e.index, e.term, _entry_type(e)] for e in log.entries(lo, hi)]


async def handle_log(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    log = ctx.node.log_view()
    limit = _int_param(request, "limit", LOG_WINDOW, 1)
    default_from = max(log.first_index, log.last_index - limit + 1)
    lo = max(_int_param(request, "from", default_from), log.first_index)
    hi = min(log.last_index, lo + limit - 1)
    return _json({"id": ctx.id, "base_index": log.base_index, "base_term": log.base_term,
                  "first_index": log.first_index, "last_index": log.last_index,
                  "commit_index": log.commit_index, "entries": log_window(log, lo, hi)})


class _LogCursor:
    """What of a node's log tail one stream has sent, to send only what changed.

    Committed entries never change, so after a truncation or a snapshot
    install it is enough to resend from the commit index seen last time."""

    def __init__(self) -> None:
        self.last = 0
        self.term: int | None = None
        self.commit = 0
        self.base = -1

    def delta(self, log) -> dict | None:
        last = log.last_index
        intact = self.last > 0 and log.term_at(self.last) == self.term and self.last <= last
        if intact and last == self.last and log.base_index == self.base:
            return None
        if intact:
            start = self.last + 1
        elif self.last == 0:
            start = 1
        else:
            start = self.commit + 1
        start = max(start, log.first_index, last - LOG_WINDOW + 1)
        entries = log_window(log, start, last) if start <= last else []
        self.last, self.term, self.commit, self.base = last, log.term_at(last), log.commit_index, log.base_index
        return {"from": start, "last": last, "base_index": log.base_index, "base_term": log.base_term,
                "entries": entries}


def _status_key(st: dict) -> tuple:
    return (st["state"], st["term"], st["commit_index"], st["applied_index"], st["last_log_index"],
            st["last_snapshot_index"], (st["leader"] or {}).get("id"), st.get("latest_configuration_index"),
            st.get("fault_injection"))


async def handle_stream(request: web.Request) -> web.StreamResponse:
    """``/debug/stream``: this node's events, to any page."""
    return await _stream(request, {"Access-Control-Allow-Origin": "*"})


async def _stream(request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
    """Server-sent events: ``hello`` once, then ``status`` (with the log tail)
    when something changed or every second, and ``log`` batches of records."""
    ctx = _ctx(request)
    node = ctx.node
    ring = ctx.events
    resp = web.StreamResponse(headers={**SSE_HEADERS, **cors})
    await resp.prepare(request)
    since_raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    seq = max(0, ring.last_seq - BACKLOG)
    if since_raw and since_raw.isdigit() and int(since_raw) <= ring.last_seq:
        seq = int(since_raw)  # a reconnect; a larger id is from before a restart
    cursor = _LogCursor()
    last_key: tuple | None = None
    last_sent = 0.0

    async def send(event: str, data: Any, event_id: int | None = None) -> None:
        head = f"id: {event_id}\n" if event_id is not None else ""
        await resp.write(f"{head}event: {event}\ndata: {_dumps(data)}\n\n".encode())

    try:
        await send("hello", {"id": ctx.id, "http": node.http_address, "boot": ring.started,
                             "fault_injection": node.faults is not None})
        while not node.stopping:
            st = status_view(ctx)
            key = _status_key(st)
            delta = cursor.delta(node.log_view())
            now = time.monotonic()
            if delta is not None or key != last_key or now - last_sent >= STREAM_KEEPALIVE:
                st["log"] = delta
                st["peers"] = peers_view(ctx) if st["state"] == "Leader" else None
                await send("status", st)
                last_key, last_sent = key, now
            records = ring.since(seq)
            if records:
                seq = records[-1]["seq"]
                await send("log", records, seq)
            await asyncio.sleep(STREAM_INTERVAL)
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass  # the page went away, or the node is shutting down
    return resp


# --- /ui ---------------------------------------------------------------------------------

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
RELAY_CONNECT_TIMEOUT = 3.0    # seconds to reach a member before the page hears it is unreachable
RELAY_READ_TIMEOUT = 5 * STREAM_KEEPALIVE  # a member stream this silent is hung (paused, cut off)
RELAY_RETRY_MS = 2000          # how soon the browser tries again after an unreachable member


async def _say_unreachable(request: web.Request, resp: web.StreamResponse | None, node_id: str,
                           http: str | None, error: str, pending: bool = False) -> web.StreamResponse:
    """End a relayed stream with one ``unreachable`` event, so the page can tell
    a member that cannot be reached from one still connecting. An ordinary
    200 event stream (not an error status) keeps the browser's EventSource
    retrying on its own, ``retry`` milliseconds later."""
    if resp is None:
        resp = web.StreamResponse(headers={**SSE_HEADERS, **member_cors_headers(request)})
        await resp.prepare(request)
    body = {"node": node_id, "http": http, "error": error, "pending": pending}
    try:
        await resp.write(f"retry: {RELAY_RETRY_MS}\nevent: unreachable\ndata: {_dumps(body)}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away first
    return resp


async def handle_ui_stream(request: web.Request) -> web.StreamResponse:
    """The page's one way to any member's ``/debug/stream``: this node's own
    stream, or another member's relayed byte for byte as it arrives (no
    buffering, so events reach the page as soon as the member sends them).
    ``Last-Event-ID`` goes upstream, so a reconnecting page resumes where it
    left off; the upstream closes as soon as the page goes away (the next
    write fails, and a member stream writes at least every second)."""
    ctx = _ctx(request)
    node_id = request.query.get("node") or ctx.id
    if node_id == ctx.id:
        return await _stream(request, member_cors_headers(request))
    if not ctx.node.configuration.has(node_id):
        raise BadRequest("node", f"unknown server {node_id!r}: not in the latest configuration")
    http = ctx.registry.http_address_of(node_id)
    if not http:
        return await _say_unreachable(request, None, node_id, None, _unknown_http(ctx, node_id), pending=True)
    headers = {"Accept": "text/event-stream"}
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    params = {k: v for k, v in request.query.items() if k == "since"}
    timeout = aiohttp.ClientTimeout(total=None, connect=RELAY_CONNECT_TIMEOUT, sock_read=RELAY_READ_TIMEOUT)
    resp: web.StreamResponse | None = None
    try:
        async with ctx.client.get(ctx.node_url(http, "/debug/stream"), headers=headers, params=params,
                                  timeout=timeout) as upstream:
            if upstream.status != 200:
                return await _say_unreachable(request, None, node_id, http,
                                              f"{node_id} at {http} answered HTTP {upstream.status}")
            resp = web.StreamResponse(headers={**SSE_HEADERS, **member_cors_headers(request)})
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                try:
                    await resp.write(chunk)
                except (ConnectionResetError, ConnectionError):
                    return resp  # the page went away: leaving the block closes the upstream
                if ctx.node.stopping:
                    return resp
        error = f"{node_id} at {http} closed its stream"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = _relay_failure(node_id, http, exc, streaming=resp is not None)
    return await _say_unreachable(request, resp, node_id, http, error)


def _unknown_http(ctx: HttpContext, node_id: str) -> str:
    if ctx.settings.protocol == "hashicorp":
        # raftkv nodes register their address within a second of joining; a
        # hashicorp/raft node never does, and serves no stream anyway
        return (f"the HTTP address of {node_id} is not known: raftkv nodes register theirs, "
                f"hashicorp/raft nodes never do (and serve no dashboard stream)")
    return f"the HTTP address of {node_id} is not known yet"


def _relay_failure(node_id: str, http: str, exc: BaseException, streaming: bool) -> str:
    """What the page shows on the card of a member the relay lost: in words,
    not as an aiohttp exception."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        why = os.strerror(err.errno) if err.errno else (str(err) or "connection failed")
        return f"cannot reach {node_id} at {http}: {why.lower()}"
    if isinstance(exc, TimeoutError):
        if streaming:
            return f"{node_id} at {http} went silent for {RELAY_READ_TIMEOUT:g}s"
        return f"{node_id} at {http} did not answer within {RELAY_CONNECT_TIMEOUT + RELAY_READ_TIMEOUT:g}s"
    if streaming:
        return f"{node_id} at {http} stopped streaming (the node stopped, or the connection broke)"
    return f"cannot reach {node_id} at {http}: {exc or type(exc).__name__}"


def ui_file(name: str) -> bytes:
    return resources.files("raftkv").joinpath("ui", name).read_bytes()


async def handle_ui(request: web.Request) -> web.StreamResponse:
    return web.Response(body=ui_file("index.html"), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def handle_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    ctype = _STATIC.get(name)
    if ctype is None:
        raise web.HTTPNotFound()
    return web.Response(body=ui_file(name), content_type=ctype, charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def handle_replay(request: web.Request) -> web.StreamResponse:
    name = request.query.get("scenario")
    if not name:
        return _json({"scenarios": record.scenario_names()})
    if name not in record.scenario_names():
        raise BadRequest("scenario", f"unknown scenario {name!r}; one of {', '.join(record.scenario_names())}")
    cache = request.app[REPLAYS]
    if name not in cache:
        loop = asyncio.get_running_loop()
        cache[name] = await loop.run_in_executor(None, record.record_scenario, name)
    return _json(cache[name])


async def handle_replay_upload(request: web.Request) -> web.StreamResponse:
    """Replay trace files: multipart form fields named ``trace`` (one file
    per node), or a single file as the raw body."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="raftkv-replay-") as tmp:
        paths: list[str] = []
        names: list[str] = []
        received = 0

        async def save(chunks, name: str) -> None:
            nonlocal received
            path = os.path.join(tmp, str(len(paths)))
            # open() can wait on a slow disk: not on the event loop
            f = await asyncio.to_thread(open, path, "wb")
            with f:
                async for chunk in chunks:
                    received += len(chunk)
                    if received > MAX_TRACE_UPLOAD:
                        raise BadRequest("trace", f"trace files larger than {MAX_TRACE_UPLOAD} bytes")
                    f.write(chunk)
            paths.append(path)
            names.append(os.path.basename(name) or f"trace {len(paths)}")

        if request.content_type.startswith("multipart/"):
            async for part in await request.multipart():
                if part.name == "trace":
                    await save(_part_chunks(part), part.filename or "")
        elif request.can_read_body:
            await save(request.content.iter_chunked(65536), request.query.get("name", ""))
        if not paths:
            raise BadRequest("trace", "no trace file uploaded (form field 'trace')")
        try:
            doc = await loop.run_in_executor(None, replay_document, paths, names)
        except TraceError as exc:
            raise BadRequest("trace", str(exc).replace(tmp + os.sep, "")) from None
    return _json(doc)


async def _part_chunks(part):
    while chunk := await part.read_chunk(65536):
        yield chunk


async def handle_faults(request: web.Request) -> web.StreamResponse:
    """Relay a fault-injection request to the named member's ``/debug/faults``."""
    ctx = _ctx(request)
    node_id = request.query.get("node") or ctx.id
    if not ctx.node.configuration.has(node_id) and node_id != ctx.id:
        raise BadRequest("node", f"unknown server {node_id!r}")
    http = ctx.registry.http_address_of(node_id)
    if not http:
        return _json({"error": f"the HTTP address of {node_id} is not known"}, 503)
    body = await request.read()
    headers = {"Content-Type": "application/json"} if body else {}
    try:
        async with ctx.client.request(request.method, ctx.node_url(http, "/debug/faults"), data=body or None,
                                              headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            data = await resp.read()
            if resp.status in (404, 405):
                return _json({"error": f"fault injection is not available on {node_id}", "node": node_id},
                             resp.status)
            return web.Response(body=data, status=resp.status,
                                content_type=resp.content_type or "application/json")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return _json({"error": f"cannot reach {node_id} at {http}: {exc or type(exc).__name__}",
                      "node": node_id}, 503)


# --- wiring ------------------------------------------------------------------------------

def prepare(app: web.Application) -> None:
    """What the dashboard keeps on the app: the replays uploaded to it."""
    app[REPLAYS] = {}
