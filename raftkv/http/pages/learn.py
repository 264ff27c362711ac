"""The learning page's HTTP side: ``/ui/learn`` and its simulator.

Theory of operation: the page (``raftkv/ui/learn.html``, ``learn.js``,
``learn.css``; no external resources) talks only to the node that served it,
over relative URLs, as the dashboard does. A learner's simulated cluster is a
:class:`~raftkv.learn.world.World` kept in this process under a random id
(at most ``MAX_WORLDS``, the least recently used goes first; a world
holds at most ``world.MAX_WORLD_FRAMES`` frames, so all of them together
stay under about 300 MB); its frames are
made on a worker thread, one world at a time, so the node's event loop keeps
serving. A lesson (:mod:`raftkv.learn.lessons`) is a world built from a
script, with the frames its stops point at. Live-cluster frames come from
:mod:`raftkv.http.pages.learn_live`.

Routes (JSON unless said otherwise; errors are 400 ``{"error", "param"}``):

=========================================  ===============================================================
``GET /ui/learn``                           the page (HTML)
``GET /ui/learn/lessons``                   ``{"lessons": [{"name", "title", "summary"}]}``
``POST /ui/learn/sim``                      new world; body ``{"nodes": 3..7, "seed"?, "pre_vote"?}``
                                            or ``{"lesson": NAME}``; answers the world's summary and,
                                            for a lesson, its ``stops`` and ``try_it``
``GET /ui/learn/sim/{id}``                  the world's summary (branches, frame count)
``GET /ui/learn/sim/{id}/frames``           ``?from=K&count=N`` (N at most 2000): ``{"frames": [...],
                                            "summary"}``
``POST /ui/learn/sim/{id}/act``             body ``{"at": K, "verb", "node"?, "key"?, "value"?,
                                            "message"?, "to"?}``: act right after frame K, the one
                                            the learner is looking at (forks unless K is the last
                                            frame; after a frame drawn halfway through a step, the
                                            step's end); answers ``{"forked", "after", "summary",
                                            "frames"}``, the frames from ``after``+1 (the action's) on
``POST /ui/learn/sim/{id}/branch``          body ``{"branch": B}``: go back to branch B
``GET /ui/learn/sim/{id}/check``            a lesson's "try it": ``{"passed", "message"}``
``GET /ui/learn/source?path=P&line=N``      the core's source around P:N (files of raftkv/raft only)
=========================================  ===============================================================

A recorded run (:class:`~raftkv.learn.recording.Recording`, the lab's failure
that ``raftkv lab open`` shows) is a world that answers the same reads and
refuses actions; :func:`recording_app` serves one on a page of its own
(``/ui/learn?recording=ID``), kept whatever other worlds come and go.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import threading
import time
from typing import Any

from aiohttp import web

from raftkv.learn import lessons
from raftkv.learn.narrate import source_excerpt
from raftkv.learn.world import VERBS, ActionError, Spec, World, random_seed

from ..api.params import BadRequest
from .dashboard import handle_static, ui_file

__all__ = ["handle_act", "handle_branch", "handle_check", "handle_frames", "handle_lessons", "handle_new",
           "handle_page", "handle_source", "handle_summary", "prepare", "recording_app"]

MAX_WORLDS = 8
MAX_COUNT = 2000
MIN_NODES, MAX_NODES = 1, 7
WORLDS = web.AppKey("learn_worlds", dict)


class _Entry:
    """A world and the lock that keeps one thread in it at a time."""

    def __init__(self, world: World, lesson=None, pinned: bool = False) -> None:
        self.world = world
        self.lesson = lesson
        self.pinned = pinned   # the recording a page was opened for: never let go
        self.lock = threading.Lock()
        self.used = time.monotonic()


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json", headers={"Cache-Control": "no-store"})


def _json_with_frames(frames: str, rest: dict) -> web.Response:
    """``{"frames": [...], **rest}``, the frames already JSON."""
    text = json.dumps(rest, separators=(",", ":"))
    return web.Response(text='{"frames":' + frames + "," + text[1:], content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _error(param: str, message: str) -> web.Response:
    return _json({"error": message, "param": param}, 400)


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body", "the body must be a JSON object")
    return body


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise BadRequest(name, f"{name} must be a whole number")
    number = int(value)
    if not lo <= number <= hi:
        raise BadRequest(name, f"{name} must be from {lo} to {hi}")
    return number


def _str(body: dict, name: str, limit: int = 256) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(name, f"{name} must be a string of at most {limit} characters")
    return value


def _entry(request: web.Request) -> _Entry:
    entry = request.app[WORLDS].get(request.match_info["id"])
    if entry is None:
        raise BadRequest("id", "no such simulation (it may have been let go: start a new one)")
    entry.used = time.monotonic()
    return entry


async def _in_world(entry: _Entry, work):
    def locked():
        with entry.lock:
            return work(entry.world)
    return await asyncio.to_thread(locked)


def _keep(app: web.Application, entry: _Entry) -> str:
    worlds = app[WORLDS]
    while sum(not e.pinned for e in worlds.values()) >= MAX_WORLDS:
        del worlds[min((k for k in worlds if not worlds[k].pinned), key=lambda k: worlds[k].used)]
    world_id = secrets.token_urlsafe(9)
    worlds[world_id] = entry
    return world_id


def _answering(handler):
    """The handler, with a bad parameter answered 400 here rather than by
    the node's error middleware, so the API answers the same wherever it is
    mounted."""
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(exc.param, exc.message)
    return handle


async def handle_page(request: web.Request) -> web.StreamResponse:
    return web.Response(body=ui_file("learn.html"), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def handle_lessons(request: web.Request) -> web.StreamResponse:
    return _json({"lessons": [lesson.describe() for lesson in lessons.LESSONS.values()]})


@_answering
async def handle_new(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    name = _str(body, "lesson", 64)
    if name is not None:
        lesson = lessons.LESSONS.get(name)
        if lesson is None:
            raise BadRequest("lesson", f"unknown lesson {name!r}; one of {', '.join(lessons.LESSONS)}")
        world, stops = await asyncio.to_thread(lesson.build)
        entry = _Entry(world, lesson)
        entry.stops = stops
        world_id = _keep(request.app, entry)
        return _json({"id": world_id, "summary": world.summary(), "lesson": lesson.describe(), "stops": stops})
    count = _int(body.get("nodes", 3), "nodes", MIN_NODES, MAX_NODES)
    seed = _int(body.get("seed", random_seed()), "seed", 0, 2 ** 31)
    pre_vote = body.get("pre_vote", True)
    if not isinstance(pre_vote, bool):
        raise BadRequest("pre_vote", "pre_vote must be true or false")
    names = tuple(f"n{i}" for i in range(1, count + 1))
    spare = ("n" + str(count + 1),) if count < MAX_NODES else ()
    world = await asyncio.to_thread(World, Spec(nodes=names + spare, voters=names, seed=seed, pre_vote=pre_vote))
    world_id = _keep(request.app, _Entry(world))
    return _json({"id": world_id, "summary": world.summary()})


@_answering
async def handle_summary(request: web.Request) -> web.StreamResponse:
    entry = _entry(request)
    return _json(await _in_world(entry, lambda w: w.summary()))


@_answering
async def handle_frames(request: web.Request) -> web.StreamResponse:
    entry = _entry(request)
    start = _int(request.query.get("from", "0"), "from", 0, 10 ** 9)
    count = _int(request.query.get("count", "500"), "count", 1, MAX_COUNT)
    frames, summary = await _in_world(entry, lambda w: (w.frames_json(start, count), w.summary()))
    return _json_with_frames(frames, {"summary": summary})


@_answering
async def handle_act(request: web.Request) -> web.StreamResponse:
    entry = _entry(request)
    body = await _body(request)
    verb = _str(body, "verb", 16)
    if verb not in VERBS:
        raise BadRequest("verb", f"verb must be one of {', '.join(VERBS)}")
    at = _int(body.get("at"), "at", 0, 10 ** 9)
    message = body.get("message")
    if message is not None:
        message = _int(message, "message", 0, 10 ** 12)
    node, key, value = _str(body, "node", 16), _str(body, "key", 64), _str(body, "value", 256)
    to = _str(body, "to", 16)
    count = _int(body.get("count", 300), "count", 1, MAX_COUNT)

    def act(world: World):
        forked, taken_at = world.act(at + 1, verb, node=node, key=key, value=value, message=message, to=to)
        return forked, taken_at - 1, world.frames_json(taken_at, count), world.summary()
    try:
        forked, after, frames, summary = await _in_world(entry, act)
    except ActionError as exc:
        return _error("verb", str(exc))
    return _json_with_frames(frames, {"forked": forked, "after": after, "summary": summary})


@_answering
async def handle_branch(request: web.Request) -> web.StreamResponse:
    entry = _entry(request)
    body = await _body(request)
    branch = _int(body.get("branch"), "branch", 0, 10 ** 6)
    try:
        summary = await _in_world(entry, lambda w: (w.switch(branch), w.summary())[1])
    except ActionError as exc:
        return _error("branch", str(exc))
    return _json(summary)


@_answering
async def handle_check(request: web.Request) -> web.StreamResponse:
    entry = _entry(request)
    if entry.lesson is None:
        raise BadRequest("id", "this simulation is not a lesson")
    passed, message = await _in_world(entry, entry.lesson.check)
    return _json({"passed": passed, "message": message})


@_answering
async def handle_source(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path", "")
    line = _int(request.query.get("line", ""), "line", 1, 10 ** 6)
    try:
        return _json(source_excerpt(path, line))
    except LookupError as exc:
        return _error("path", str(exc))


def prepare(app: web.Application) -> None:
    """What the learning page keeps on the app: its simulated worlds."""
    app[WORLDS] = collections.OrderedDict()


def recording_app(recording) -> tuple[web.Application, str]:
    """An app serving the learning page with ``recording`` in it (and the
    page's simulator besides); the recording's world id."""
    app = web.Application()
    prepare(app)
    world_id = _keep(app, _Entry(recording, pinned=True))

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"/ui/learn?recording={world_id}&paused=1")
    app.router.add_get("/", home)
    app.router.add_get("/ui/learn", handle_page)
    app.router.add_get("/ui/static/{name}", handle_static)
    app.router.add_get("/ui/learn/lessons", handle_lessons)
    app.router.add_post("/ui/learn/sim", handle_new)
    app.router.add_get("/ui/learn/sim/{id}", handle_summary)
    app.router.add_get("/ui/learn/sim/{id}/frames", handle_frames)
    app.router.add_post("/ui/learn/sim/{id}/act", handle_act)
    app.router.add_post("/ui/learn/sim/{id}/branch", handle_branch)
    app.router.add_get("/ui/learn/sim/{id}/check", handle_check)
    app.router.add_get("/ui/learn/source", handle_source)
    return app, world_id
