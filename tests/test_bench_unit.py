"""Unit tests of the bench tool's pure parts (mix parsing, percentiles, the
report, the lean HTTP client's parser) and of the GC policy."""

from __future__ import annotations

import asyncio
import gc

import pytest

from raftkv.cli import bench, bench_clients
from raftkv.node.policies.gcpolicy import GcPolicy


def test_parse_mix():
    assert bench.parse_mix("set=70,get=20,stale=10") == {"set": 70.0, "get": 20.0, "stale": 10.0}
    assert bench.parse_mix("get") == {"get": 1.0}
    assert bench.parse_mix("set=1,get=0") == {"set": 1.0}
    for bad in ("nope=1", "set=x", "set=-1", "set=0", ""):
        with pytest.raises(ValueError):
            bench.parse_mix(bad)


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert bench.percentile([7], 99) == 7
    assert bench.percentile([], 50) == 0.0


def test_summary_and_report():
    plan = bench.Plan(addrs=["127.0.0.1:1"], clients=2, mix={"set": 1.0, "get": 1.0})
    tally = bench.Tally()
    tally.lat["set"].extend([0.001, 0.002, 0.003])
    tally.lat["get"].extend([0.004])
    tally.error("HTTP 503")
    tally.elapsed = 2.0
    r = bench.summarize(plan, tally, wall=2.0, cpu=0.5, procs=1)
    assert r["ops"] == 4 and r["errors"] == 1 and r["error_kinds"] == {"HTTP 503": 1}
    assert r["ops_per_s"] == 2.0 and r["client_cpu_percent"] == 25.0
    assert r["latency_ms"]["p50"] == 2.0 and r["latency_ms"]["max"] == 4.0
    assert r["by_op"]["get"]["ops"] == 1
    text = bench.format_report(r)
    assert "ops=4 errors=1 ops/s=2.0" in text
    assert "p50=2.00 p90=4.00 p99=4.00 max=4.00" in text
    assert "'HTTP 503'=1" in text and "  set   ops=3" in text


def test_split():
    assert bench._split(10, 3) == [4, 3, 3]
    assert sum(bench._split(64, 5)) == 64


class _FakeTransport:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


async def test_raw_connection_parses_answers_split_anywhere():
    loop = asyncio.get_running_loop()
    conn = bench_clients._RawConnection()
    conn.connection_made(_FakeTransport())
    answer = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
              b"Content-Length: 5\r\n\r\n{...}")
    for cut in range(1, len(answer)):
        conn.waiter = fut = loop.create_future()
        conn.data_received(answer[:cut])
        assert not fut.done()
        conn.data_received(answer[cut:])
        assert fut.result() == 404
    # one answer in one read, then the next on the same connection
    conn.waiter = fut = loop.create_future()
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert fut.result() == 200
    conn.waiter = fut = loop.create_future()
    conn.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert fut.result() == 503 and not conn.transport.closed


async def test_raw_connection_reads_chunked_answers_and_connection_close():
    loop = asyncio.get_running_loop()
    conn = bench_clients._RawConnection()
    tr = _FakeTransport()
    conn.connection_made(tr)
    conn.waiter = fut = loop.create_future()
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
    assert not fut.done()
    conn.data_received(b"0\r\n\r\n")
    assert fut.result() == 200 and not tr.closed
    conn.waiter = fut = loop.create_future()
    conn.data_received(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 1\r\n\r\n")
    assert not fut.done()
    conn.data_received(b"x")
    assert fut.result() == 400 and tr.closed


async def test_raw_connection_errors():
    loop = asyncio.get_running_loop()
    for answer, message in [(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nrest", "Content-Length"),
                            (b"SMTP ready\r\n\r\n", None),
                            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", None)]:
        conn = bench_clients._RawConnection()
        tr = _FakeTransport()
        conn.connection_made(tr)
        conn.waiter = fut = loop.create_future()
        conn.data_received(answer)
        with pytest.raises(bench_clients.HttpError, match=message):
            fut.result()
        assert tr.closed
    conn.waiter = fut = loop.create_future()
    conn.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        fut.result()


def test_gc_policy_freezes_on_schedule():
    now = [100.0]
    policy = GcPolicy(freeze_every=2.0, clock=lambda: now[0])
    try:
        policy.started()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        keep = [[i] for i in range(1000)]  # new tracked objects
        policy.tick()  # too early: nothing frozen
        assert gc.get_freeze_count() == frozen
        now[0] += 2.5
        policy.tick()
        assert gc.get_freeze_count() >= frozen + len(keep)
        policy.compacted()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_gc_policy_full_collection_without_snapshots():
    now = [0.0]
    policy = GcPolicy(freeze_every=2.0, full_every=60.0, full_limit=10**9, clock=lambda: now[0])
    try:
        policy.started()

        class Cycle:
            other: "Cycle | None" = None
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        now[0] += 3
        policy.tick()  # the cycle is frozen while still in use
        assert gc.get_freeze_count() > 0
        del a, b  # now it is garbage, but frozen: only a full collection frees it
        now[0] += 60
        collected = []
        gc.callbacks.append(lambda phase, info: phase == "stop" and collected.append(info))
        try:
            policy.tick()
        finally:
            gc.callbacks.pop()
        assert any(info["generation"] == 2 and info["collected"] >= 2 for info in collected), collected
        # too many frozen objects: no periodic full collection
        policy.full_limit = 0
        now[0] += 61
        collected.clear()
        gc.callbacks.append(lambda phase, info: phase == "stop" and collected.append(info))
        try:
            policy.tick()
        finally:
            gc.callbacks.pop()
        assert all(info["generation"] < 2 for info in collected), collected
    finally:
        gc.unfreeze()


def test_gc_policy_counts_frozen_objects_once_per_full_period(monkeypatch):
    now = [0.0]
    calls = []
    real = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: calls.append(1) or real())
    policy = GcPolicy(freeze_every=2.0, full_every=60.0, full_limit=0, clock=lambda: now[0])
    try:
        policy.started()
        now[0] += 61
        for _ in range(100):  # refused (too many frozen): the count is not asked again each tick
            now[0] += 0.1
            policy.tick()
        assert len(calls) == 1
        now[0] += 60
        policy.tick()
        assert len(calls) == 2
    finally:
        gc.unfreeze()


async def test_raw_clients_against_a_loopback_server():
    from aiohttp import web

    seen = []

    async def handler(request):
        seen.append(request.path_qs)
        if request.query.get("stale"):
            return web.Response(status=404, text="{}")  # a miss counts as an error
        return web.json_response({"ok": True})

    server = web.Server(handler)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        plan = bench.Plan(addrs=[f"127.0.0.1:{port}"], clients=2, duration=None, requests=30,
                          mix={"set": 1.0, "get": 1.0, "stale": 1.0}, seed=7, value_size=5)
        tally = await bench.run_clients(plan, 0, plan.clients, budget=plan.requests)
    finally:
        listener.close()
        await server.shutdown(1.0)
    assert len(seen) == 30 and tally.ok + tally.failed == 30
    stale = sum(1 for p in seen if "stale=true" in p)
    assert tally.errors == ({"HTTP 404": stale} if stale else {})
    assert len(tally.lat["set"]) == sum(1 for p in seen if p.startswith("/set?key=bench-") and "value=vvvvv" in p)
