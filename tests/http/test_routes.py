"""The route table (raftkv/http/routes.py) and the one shape of an answer:
every route once, the fast rows the data plane's GETs, aiohttp serving every
row, and a Pending answer awaited in place or delivered from a callback."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from raftkv.http.api import kv
from raftkv.http.api.replies import Pending, Reply
from raftkv.http.routes import ROUTES, fast_routes
from raftkv.http.server.app import mount


def test_every_route_is_in_the_table_once():
    rows = [(r.method, r.path) for r in ROUTES]
    assert len(rows) == len(set(rows))
    assert all(r.path.startswith("/") and r.method in ("GET", "POST", "DELETE") for r in ROUTES)


def test_the_fast_rows_are_the_data_planes_gets_without_a_body():
    fast = [r for r in ROUTES if r.fast]
    assert {(r.method, r.path) for r in fast} == {("GET", "/get"), ("GET", "/set")}
    assert all(not r.body and not r.aiohttp and r.fn.__module__ == kv.__name__ for r in fast)
    bound = fast_routes("ctx")
    assert set(bound) == {("GET", "/get"), ("GET", "/set")} and bound["GET", "/get"].args == ("ctx",)


def test_a_get_that_writes_answers_no_head():
    writes = {r.path for r in ROUTES if r.method == "GET" and not r.head}
    assert writes == {"/set", "/remove", "/join", "/transfer-leadership"}


def test_aiohttp_serves_every_row():
    app = web.Application()
    mount(app, ROUTES)
    served = {(route.method, route.resource.canonical) for route in app.router.routes()}
    want = set()
    for r in ROUTES:
        path = r.path.replace("{key:.+}", "{key}")
        want.add((r.method, path))
        if r.method == "GET" and r.head:
            want.add(("HEAD", path))
    assert served == want


async def test_a_pending_of_a_coroutine_is_awaited_in_place_or_run_as_a_task():
    async def answer() -> Reply:
        await asyncio.sleep(0)
        return Reply(200, b"{}")

    assert (await Pending.of(answer())).status == 200
    got = asyncio.get_running_loop().create_future()
    Pending.of(answer()).then(got.set_result)
    assert (await asyncio.wait_for(got, 5)).status == 200


async def test_a_pending_resolved_from_a_callback_or_failing():
    pending = Pending()
    asyncio.get_running_loop().call_soon(pending.resolve, Reply(201, b"{}"))
    assert (await pending).status == 201

    async def fails() -> Reply:
        raise LookupError("nope")

    with pytest.raises(LookupError):
        await Pending.of(fails())
    failed = Pending()
    failed.resolve(KeyError("k"))
    with pytest.raises(KeyError):
        await failed
