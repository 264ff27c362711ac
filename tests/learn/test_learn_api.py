"""/ui/learn's API over HTTP: new worlds and lessons, frames, acting and forking, branches,
checks, the source view, and clear 400s for bad input."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftkv.http.pages import learn
from raftkv.http.routes import ROUTES
from raftkv.http.server.app import mount


@pytest.fixture
async def client():
    app = web.Application()
    learn.prepare(app)
    mount(app, [r for r in ROUTES if r.fn.__module__ in ("raftkv.http.pages.learn", "raftkv.http.pages.learn_live")])
    async with TestClient(TestServer(app)) as c:
        yield c


async def _json(resp, status=200):
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_a_world_plays_forks_and_returns_to_a_branch(client):
    world = await _json(await client.post("/ui/learn/sim", json={"nodes": 3, "seed": 1}))
    wid = world["id"]
    assert world["summary"]["nodes"] == ["n1", "n2", "n3", "n4"] and world["summary"]["voters"] == ["n1", "n2", "n3"]
    frames = (await _json(await client.get(f"/ui/learn/sim/{wid}/frames?from=0&count=300")))["frames"]
    assert [f["i"] for f in frames] == list(range(300))
    leader = next(n["id"] for f in frames for n in f["nodes"] if n.get("role") == "Leader")
    acted = await _json(await client.post(f"/ui/learn/sim/{wid}/act", json={"at": 120, "verb": "crash",
                                                                           "node": leader}))
    assert acted["forked"] and acted["frames"][0]["i"] == 121 and acted["frames"][0]["event"]["verb"] == "crash"
    assert len(acted["summary"]["branches"]) == 2 and acted["summary"]["branch"] == 1
    back = await _json(await client.post(f"/ui/learn/sim/{wid}/branch", json={"branch": 0}))
    assert back["branch"] == 0
    again = (await _json(await client.get(f"/ui/learn/sim/{wid}/frames?from=0&count=300")))["frames"]
    assert again == frames


async def test_a_lesson_answers_its_stops_and_its_check(client):
    lessons = (await _json(await client.get("/ui/learn/lessons")))["lessons"]
    assert len(lessons) == 10 and {"name", "title", "summary", "try_it"} <= set(lessons[0])
    made = await _json(await client.post("/ui/learn/sim", json={"lesson": "leader-crash"}))
    assert made["lesson"]["name"] == "leader-crash" and made["stops"][-1]["try_it"]
    check = await _json(await client.get(f"/ui/learn/sim/{made['id']}/check"))
    assert check["passed"] is False and check["message"]


async def test_the_source_view(client):
    excerpt = await _json(await client.get("/ui/learn/source?path=raftkv/raft/election.py&line=100"))
    assert excerpt["path"] == "raftkv/raft/election.py" and excerpt["lines"]
    bad = await _json(await client.get("/ui/learn/source?path=raftkv/main.py&line=1"), 400)
    assert "not a file of the Raft core" in bad["error"]


@pytest.mark.parametrize("method,path,body,param", [
    ("post", "/ui/learn/sim", {"nodes": 9}, "nodes"),
    ("post", "/ui/learn/sim", {"nodes": "many"}, "nodes"),
    ("post", "/ui/learn/sim", {"lesson": "nope"}, "lesson"),
    ("get", "/ui/learn/sim/unknown/frames", None, "id"),
])
async def test_bad_input_gets_a_400_naming_the_problem(client, method, path, body, param):
    resp = await getattr(client, method)(path, json=body) if body is not None else await getattr(client, method)(path)
    assert resp.status == 400
    assert param in await resp.text()


async def test_bad_actions_get_a_400_and_change_nothing(client):
    wid = (await _json(await client.post("/ui/learn/sim", json={"nodes": 3, "seed": 2})))["id"]
    for body in ({"at": 5, "verb": "crash", "node": "n9"}, {"at": 5, "verb": "explode"},
                 {"at": -1, "verb": "crash", "node": "n1"}, {"verb": "crash", "node": "n1"}):
        resp = await client.post(f"/ui/learn/sim/{wid}/act", json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]
    resp = await client.post(f"/ui/learn/sim/{wid}/act", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    summary = await _json(await client.get(f"/ui/learn/sim/{wid}"))
    assert len(summary["branches"]) == 1 and summary["branches"][0]["actions"] == []
