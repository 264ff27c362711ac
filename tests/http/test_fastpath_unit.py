"""The HTTP fast path on a real loopback server, spoken to over raw sockets:
fast routes, pipelining, hand-over to a real aiohttp ``web.Server``, errors,
keep-alive and idle close; the connection-level ones on uvloop too."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import uvloop
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from raftkv.http.api.context import Call
from raftkv.http.api.replies import Pending, Reply
from raftkv.http.server.fastpath import FastPath
from raftkv.http.server.limits import HttpLimits, JsonErrorHandler


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, event, **fields):
        self.lines.append(("warning", event, fields))

    def error(self, event, **fields):
        self.lines.append(("error", event, fields))


def echo_get(call: Call) -> Pending:
    """A route that answers from a coroutine: a Pending of it."""
    return Pending.of(_echo(call))


async def _echo(call: Call) -> Reply:
    query = call.query
    if "sleep" in query:
        await asyncio.sleep(float(query["sleep"]))
    if "boom" in query:
        raise RuntimeError("data plane bug")
    body = {"route": call.raw_path.partition("?")[0], "method": call.method, "target": call.raw_path, "query": query,
            "headers": dict(call.headers), "remote": call.remote}
    status = int(query.get("status", "200"))
    return Reply(status, json.dumps(body).encode(), headers=(("X-Extra", "yes"),))


async def aiohttp_handler(request: web.BaseRequest) -> web.StreamResponse:
    body = await request.read()
    return web.json_response({"aiohttp": True, "method": request.method, "path": request.path,
                              "query": dict(request.query), "body": body.decode()})


class Server:
    """A FastPath on 127.0.0.1, aiohttp's low-level server behind it (with
    ``json_errors``, through raftkv's JsonErrorHandler, as in a node)."""

    def __init__(self, json_errors: bool = False, **kwargs):
        self.kwargs = kwargs
        self.json_errors = json_errors
        self.observed = []
        self.log = Log()
        self.handed = 0

    async def __aenter__(self):
        self.aiohttp = web.Server(aiohttp_handler)

        def fallback():
            self.handed += 1
            return make_handler()

        kwargs = dict(routes={(b"GET", "/get"): echo_get, ("GET", "/set"): echo_get}, fallback=fallback,
                      observe=lambda *args: self.observed.append(args),
                      headers={"X-Raftkv-Served-By": "n1", "Access-Control-Allow-Origin": "*"},
                      log=self.log)
        kwargs.update(self.kwargs)
        self.fast = FastPath(**kwargs)
        make_handler = self.aiohttp
        if self.json_errors:
            limits = HttpLimits(self.fast.max_head, self.fast.max_headers, self.fast.head_timeout,
                                self.fast.idle_timeout, self.fast.max_connections)
            make_handler = JsonErrorHandler.factory(self.aiohttp, asyncio.get_running_loop(), self.fast, "n1",
                                                    self.log, limits)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.fast, "127.0.0.1", 0, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def connect(self):
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def __aexit__(self, *exc):
        self.server.close()
        self.fast.close()
        await self.aiohttp.shutdown(1.0)
        await self.server.wait_closed()


async def read_response(reader: asyncio.StreamReader):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version in ("HTTP/1.1", "HTTP/1.0")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status), headers, body


async def assert_closed(reader: asyncio.StreamReader):
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def trickle_bytes(writer: asyncio.StreamWriter, data: bytes, pause: float, piece: int = 1) -> None:
    """Write ``data`` a piece at a time until it is all out or the server
    has closed the connection."""
    for i in range(0, len(data), piece):
        if writer.is_closing():
            return
        writer.write(data[i:i + piece])
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(pause)


def get(target: str, *extra: str) -> bytes:
    return ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (target, "".join(h + "\r\n" for h in extra))).encode()


async def test_fast_get_answers_with_the_common_headers():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?key=a+b&value=%2B1%C3%A9&key=second&flag", "Authorization: Bearer t",
                         "X-Forwarded-For: 10.0.0.9", "User-Agent: test"))
        status, headers, body = await read_response(reader)
        assert status == 200
        doc = json.loads(body)
        assert doc == {"route": "/get", "method": "GET",
                       "target": "/get?key=a+b&value=%2B1%C3%A9&key=second&flag",
                       "query": {"key": "a b", "value": "+1é", "flag": ""},
                       "headers": {"authorization": "Bearer t", "x-forwarded-for": "10.0.0.9"},
                       "remote": "127.0.0.1"}
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["x-raftkv-served-by"] == "n1"
        assert headers["access-control-allow-origin"] == "*"
        assert headers["x-extra"] == "yes"
        assert headers["server"].startswith("Python/")
        assert headers["date"].endswith(" GMT")
        assert "connection" not in headers
        # the connection stays open for the next request
        writer.write(get("/set?key=k&value=v"))
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["route"] == "/set"
        assert s.handed == 0
        writer.close()


async def test_observe_gets_route_method_status_and_duration():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?key=a&status=404"))
        status, _, _ = await read_response(reader)
        assert status == 404
        (route, method, status, seconds), = s.observed
        assert (route, method, status) == ("/get", "GET", 404)
        assert 0 <= seconds < 5
        writer.close()


async def test_pipelined_fast_requests_are_answered_in_order():
    async with Server() as s:
        reader, writer = await s.connect()
        # the first is the slowest: answers must still come in request order
        writer.write(get("/get?n=1&sleep=0.1") + get("/get?n=2&sleep=0.01") + get("/set?n=3"))
        for n in (1, 2, 3):
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["query"]["n"] == str(n)
        assert [o[0] for o in s.observed] == ["/get", "/get", "/set"]
        writer.close()


def three_kinds_of_route():
    """``/now`` answers at once; ``/later`` and ``/pending`` with a Pending
    resolved after ``delay`` seconds (or with a bug, ``fail``), ``/later``
    through an asyncio future's callback; ``/get`` with a coroutine."""
    def route(call):
        query, path = call.query, call.raw_path.partition("?")[0]
        if path == "/now":
            if "boom" in query:
                raise RuntimeError("sync data plane bug")
            return Reply(200, json.dumps({"kind": "now", "n": query.get("n")}).encode())
        if path == "/later":
            # resolved from an asyncio future's callback, as the data plane does
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            pending = Pending()
            fut.add_done_callback(lambda f: pending.resolve(f.exception() or f.result()))
            if "fail" in query:
                loop.call_later(0.01, fut.set_exception, RuntimeError("future data plane bug"))
            else:
                body = json.dumps({"kind": "later", "n": query.get("n")}).encode()
                loop.call_later(float(query.get("delay", "0.01")), fut.set_result, Reply(200, body))
            return pending
        if path == "/pending":
            pending = Pending()
            body = json.dumps({"kind": "pending", "n": query.get("n")}).encode()
            outcome = RuntimeError("pending data plane bug") if "fail" in query else Reply(200, body)
            if "ready" in query:
                pending.resolve(outcome)  # resolved before the fast path looks
            else:
                asyncio.get_running_loop().call_later(float(query.get("delay", "0.01")), pending.resolve, outcome)
            return pending
        return echo_get(call)
    return {("GET", "/now"): route, ("GET", "/later"): route, ("GET", "/get"): route, ("GET", "/pending"): route}


async def test_a_route_may_answer_at_once_pending_or_with_a_coroutine():
    async with Server(routes=three_kinds_of_route()) as s:
        reader, writer = await s.connect()
        # pipelined: the slow future first, then immediate answers behind it
        writer.write(get("/later?n=1&delay=0.1") + get("/now?n=2") + get("/get?n=3&sleep=0.02") + get("/now?n=4")
                     + get("/pending?n=5&delay=0.05") + get("/pending?n=6&ready=1") + get("/now?n=7"))
        answers = []
        for _ in range(7):
            status, _, body = await read_response(reader)
            assert status == 200
            answers.append(json.loads(body))
        assert [a.get("kind", "task") for a in answers] == ["later", "now", "task", "now", "pending", "pending",
                                                            "now"]
        assert [a.get("n") or a["query"]["n"] for a in answers] == ["1", "2", "3", "4", "5", "6", "7"]
        assert [o[0] for o in s.observed] == ["/later", "/now", "/get", "/now", "/pending", "/pending", "/now"]
        writer.close()


async def test_many_immediate_answers_on_many_connections_all_arrive():
    async with Server(routes=three_kinds_of_route()) as s:
        conns = [await s.connect() for _ in range(20)]
        for i, (_, writer) in enumerate(conns):
            writer.write(b"".join(get(f"/now?n={i}-{j}") for j in range(10)))
        for i, (reader, writer) in enumerate(conns):
            for j in range(10):
                status, _, body = await read_response(reader)
                assert status == 200 and json.loads(body)["n"] == f"{i}-{j}"
            writer.close()


@pytest.mark.parametrize("target", ["/now?boom=1", "/later?fail=1", "/pending?fail=1", "/pending?fail=1&ready=1"])
async def test_a_bug_in_an_immediate_or_future_route_is_a_logged_500(target):
    async with Server(routes=three_kinds_of_route()) as s:
        reader, writer = await s.connect()
        writer.write(get(target) + get("/now?n=after"))
        status, _, body = await read_response(reader)
        assert status == 500 and "internal error: RuntimeError" in json.loads(body)["error"]
        assert any(line[1] == "internal error serving request" for line in s.log.lines)
        status, _, body = await read_response(reader)  # the connection goes on
        assert status == 200 and json.loads(body)["n"] == "after"
        writer.close()


async def test_a_head_split_byte_by_byte():
    async with Server() as s:
        reader, writer = await s.connect()
        for byte in get("/get?key=slow"):
            writer.write(bytes([byte]))
            await writer.drain()
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["query"] == {"key": "slow"}
        writer.close()


async def test_pipelined_mix_hands_over_to_aiohttp_in_order():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1&sleep=0.05") + get("/status?n=2") + get("/get?n=3"))
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["query"] == {"n": "1", "sleep": "0.05"}
        status, _, body = await read_response(reader)
        assert status == 200
        assert json.loads(body) == {"aiohttp": True, "method": "GET", "path": "/status", "query": {"n": "2"},
                                    "body": ""}
        # after the hand-over aiohttp owns the connection, fast routes included
        status, _, body = await read_response(reader)
        assert json.loads(body)["aiohttp"] is True and json.loads(body)["query"] == {"n": "3"}
        assert s.handed == 1
        assert len(s.observed) == 1 and not s.fast.connections
        writer.close()


async def test_a_request_with_a_body_is_handed_over():
    async with Server() as s:
        reader, writer = await s.connect()
        body = b"hello, body"
        writer.write(get("/get?n=1") + b"POST /set?key=k HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % len(body))
        await writer.drain()
        await asyncio.sleep(0.05)  # the body arrives apart from its head
        writer.write(body)
        status, _, answer = await read_response(reader)
        assert status == 200 and json.loads(answer)["route"] == "/get"
        status, _, answer = await read_response(reader)
        assert json.loads(answer) == {"aiohttp": True, "method": "POST", "path": "/set",
                                      "query": {"key": "k"}, "body": "hello, body"}
        writer.close()


@pytest.mark.parametrize("request_bytes", [
    b"GET /get?key=a HTTP/1.0\r\nHost: x\r\n\r\n",
    b"HEAD /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /get?key=a;b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /get?key=%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /get?key=a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET /get?key=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /get?key=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET ftp://x/get?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
])
async def test_what_the_fast_path_does_not_cover_goes_to_aiohttp(request_bytes):
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(request_bytes)
        await writer.drain()
        if request_bytes.startswith(b"HEAD"):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
        else:
            status, _, body = await read_response(reader)
            assert json.loads(body)["aiohttp"] is True, body
        assert s.handed == 1 and not s.observed
        writer.close()


async def test_garbage_is_a_json_400_and_the_connection_closes():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1") + b"\x01\x02 not http at all\r\n\r\n" + get("/get?n=3"))
        status, _, body = await read_response(reader)
        assert status == 200
        status, headers, body = await read_response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert headers["x-raftkv-served-by"] == "n1"
        doc = json.loads(body)
        assert doc["param"] == "request" and doc["error"]
        await assert_closed(reader)
        assert [line[:2] for line in s.log.lines] == [("warning", "unparseable request")]
        assert s.handed == 0
        writer.close()


async def test_connection_close_is_honoured():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1", "Connection: close") + get("/get?n=2"))
        status, headers, body = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert json.loads(body)["query"]["n"] == "1"
        await assert_closed(reader)
        writer.close()


async def test_half_close_after_pipelined_requests_still_gets_every_answer():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1&sleep=0.05") + get("/get?n=2"))
        writer.write_eof()
        for n in ("1", "2"):
            status, _, body = await read_response(reader)
            assert json.loads(body)["query"]["n"] == n
        await assert_closed(reader)
        writer.close()


async def test_a_head_over_the_limit_is_431():
    async with Server(max_head=1024) as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1") + get("/set?key=k&value=" + "v" * 2000))
        status, _, _ = await read_response(reader)
        assert status == 200
        status, headers, body = await read_response(reader)
        assert status == 431 and json.loads(body)["param"] == "request"
        assert "over the limit of 1024 bytes (HTTP_MAX_HEAD_BYTES)" in json.loads(body)["error"]
        await assert_closed(reader)
        writer.close()
    # a large head within the limit is served
    async with Server(max_head=64 * 1024) as s:
        reader, writer = await s.connect()
        writer.write(get("/set?key=k&value=" + "v" * 40000))
        status, _, body = await read_response(reader)
        assert status == 200 and len(json.loads(body)["query"]["value"]) == 40000
        writer.close()


async def test_a_head_over_the_limit_without_its_end_is_431_as_soon_as_it_is_over():
    async with Server(max_head=1024) as s:
        reader, writer = await s.connect()
        writer.write(b"GET /get?key=" + b"k" * 600)
        await writer.drain()
        writer.write(b"k" * 600)  # no blank line yet: over the limit all the same
        status, _, body = await read_response(reader)
        assert status == 431 and "1024" in json.loads(body)["error"]
        await assert_closed(reader)
        writer.close()


async def test_too_many_header_fields_is_431():
    async with Server(max_headers=20) as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1", *(f"X-H{i}: v" for i in range(18))))  # 19 with Host
        status, _, _ = await read_response(reader)
        assert status == 200
        writer.write(get("/get?n=2", *(f"X-H{i}: v" for i in range(25))))
        status, _, body = await read_response(reader)
        assert status == 431
        assert json.loads(body) == {"error": "more than 20 header fields (HTTP_MAX_HEADERS)", "param": "request"}
        await assert_closed(reader)
        writer.close()


async def test_a_head_that_trickles_past_its_deadline_is_408_and_closed():
    async with Server(head_timeout=0.4) as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1"))
        status, _, _ = await read_response(reader)
        assert status == 200
        t0 = time.monotonic()
        # a byte every 50 ms: activity, but the head's clock runs from its first byte
        trickle = asyncio.ensure_future(trickle_bytes(writer, get("/get?n=2")[:-2], 0.05))
        status, headers, body = await read_response(reader)
        trickle.cancel()
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body) == {"error": "request head not complete 0.4s after it began (HTTP_HEAD_TIMEOUT)",
                                    "param": "request"}
        assert 0.3 < time.monotonic() - t0 < 3
        await assert_closed(reader)
        assert ("warning", "refused request") in [line[:2] for line in s.log.lines]
        writer.close()


async def test_a_head_that_never_ends_after_a_hand_over_is_408_and_closed():
    async with Server(json_errors=True, head_timeout=0.4) as s:
        reader, writer = await s.connect()
        writer.write(get("/status?n=1"))  # aiohttp's from here on
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["aiohttp"] is True
        t0 = time.monotonic()
        trickle = asyncio.ensure_future(trickle_bytes(writer, b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 40,
                                                      0.05, piece=6))
        status, _, body = await read_response(reader)
        trickle.cancel()
        assert status == 408 and "HTTP_HEAD_TIMEOUT" in json.loads(body)["error"]
        assert 0.3 < time.monotonic() - t0 < 3
        await assert_closed(reader)
        assert s.handed == 1 and s.fast.open_connections == 0
        writer.close()


async def test_a_head_over_the_limit_after_a_hand_over_is_431():
    async with Server(json_errors=True, max_head=4096) as s:
        reader, writer = await s.connect()
        writer.write(get("/status?n=1"))
        status, _, _ = await read_response(reader)
        assert status == 200
        writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        for _ in range(10):  # short header lines: only the whole head is over
            writer.write(b"".join(b"X-%d: %s\r\n" % (i, b"v" * 40) for i in range(20)))
            await writer.drain()
        status, _, body = await read_response(reader)
        assert status == 431 and "4096" in json.loads(body)["error"]
        await assert_closed(reader)
        writer.close()


async def test_a_body_that_stalls_is_closed_after_the_idle_timeout():
    async with Server(json_errors=True, idle_timeout=0.4) as s:
        reader, writer = await s.connect()
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        t0 = time.monotonic()
        await assert_closed(reader)
        assert 0.3 < time.monotonic() - t0 < 3
        writer.close()


@pytest.mark.parametrize("request_bytes, status, error, param", [
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "bad request body: Invalid character in chunk size", "body"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\n", 400,
     "bad request body: Chunk size overflow", "body"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", 400,
     "bad request body: Expected LF after chunk data", "body"),
    (get("/status", "X-Big: " + "b" * 5000), 431, "HTTP_MAX_HEAD_BYTES", "request"),
    (get("/status", *(f"X-H{i}: v" for i in range(30))), 431, "more than 20 header fields (HTTP_MAX_HEADERS)",
     "request"),
    (b"GET /status HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400, "Invalid header", "request"),
    (b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400,
     "Content-Length", "request"),
])
async def test_aiohttp_parser_errors_are_json(request_bytes, status, error, param):
    async with Server(json_errors=True, max_head=4096, max_headers=20) as s:
        reader, writer = await s.connect()
        # the first request hands the connection over: the second is aiohttp's to parse
        writer.write(get("/status?n=1"))
        assert (await read_response(reader))[0] == 200
        writer.write(request_bytes)
        got, headers, body = await read_response(reader)
        assert got == status, body
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["x-raftkv-served-by"] == "n1"
        doc = json.loads(body)
        assert error in doc["error"] and doc["param"] == param, doc
        await assert_closed(reader)
        writer.close()


async def test_a_bad_chunk_after_good_ones_is_answered_at_once():
    async with Server(json_errors=True) as s:
        reader, writer = await s.connect()
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # apart from its head, mostly; answered alike when not
        writer.write(b"zz\r\n")
        status, _, body = await read_response(reader)
        assert status == 400 and json.loads(body) == {"error": "bad request body: Invalid character in chunk size",
                                                      "param": "body"}
        await assert_closed(reader)
        writer.close()


async def test_half_close_after_a_hand_over_gets_every_answer_then_closes():
    async with Server(json_errors=True) as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1&sleep=0.05") + get("/status?n=2") + get("/status?n=3"))
        writer.write_eof()
        for n in ("1", "2", "3"):
            status, _, body = await read_response(reader)
            doc = json.loads(body)
            assert status == 200 and (doc.get("query") or {}).get("n") == n, doc
        await assert_closed(reader)
        writer.close()


async def test_half_close_in_the_middle_of_a_body_closes_without_waiting():
    async with Server(json_errors=True) as s:
        reader, writer = await s.connect()
        writer.write(get("/status?n=1") + b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        writer.write_eof()
        status, _, _ = await read_response(reader)
        assert status == 200
        t0 = time.monotonic()
        await assert_closed(reader)
        assert time.monotonic() - t0 < 2
        writer.close()


async def test_connections_over_the_cap_get_503_and_are_closed():
    async with Server(max_connections=2) as s:
        first, second = await s.connect(), await s.connect()
        reader, writer = await s.connect()
        status, headers, body = await read_response(reader)
        assert status == 503 and headers["connection"] == "close"
        assert json.loads(body) == {"error": "too many connections (HTTP_MAX_CONNECTIONS=2)"}
        await assert_closed(reader)
        writer.close()
        # those within the cap are served; one closed makes room for another
        first[1].write(get("/get?n=1"))
        assert (await read_response(first[0]))[0] == 200
        first[1].close()
        deadline = time.monotonic() + 5
        while s.fast.open_connections > 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        reader, writer = await s.connect()
        writer.write(get("/get?n=2"))
        assert (await read_response(reader))[0] == 200
        writer.close()
        second[1].close()


async def test_a_query_that_is_not_utf8_is_a_400_naming_the_parameter():
    async with Server() as s:
        reader, writer = await s.connect()
        for target, param in (("/get?key=%FF", "key"), ("/set?key=k&value=%ED%A0%80", "value"),
                              ("/set?key=k&value=%C0%AF", "value"), ("/get?%FE=1", "%FE")):
            writer.write(get(target))
            status, _, body = await read_response(reader)
            assert status == 400, target
            assert json.loads(body) == {"error": f"parameter {'name ' if param.startswith('%') else ''}"
                                                 f"{param} is not valid UTF-8", "param": param}
        writer.write(get("/get?n=after"))  # the connection goes on
        assert (await read_response(reader))[0] == 200
        assert s.handed == 0 and [o[2] for o in s.observed] == [400, 400, 400, 400, 200]
        writer.close()


async def test_a_header_a_route_reads_that_is_not_utf8_is_a_400():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(b"GET /get?n=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 400
        assert json.loads(body) == {"error": "header Authorization is not valid UTF-8", "param": "Authorization"}
        writer.close()


async def test_an_absolute_form_target_is_served_as_its_path_and_query():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("http://example.org:8000/get?key=a") + get("HTTP://example.org/set"))
        for route, target, query in (("/get", "/get?key=a", {"key": "a"}), ("/set", "/set", {})):
            status, _, body = await read_response(reader)
            doc = json.loads(body)
            assert status == 200 and (doc["route"], doc["target"], doc["query"]) == (route, target, query)
        assert s.handed == 0
        writer.close()


async def test_a_data_plane_error_is_a_logged_500():
    async with Server() as s:
        reader, writer = await s.connect()
        writer.write(get("/get?boom=1") + get("/get?n=2"))
        status, headers, body = await read_response(reader)
        assert status == 500 and json.loads(body) == {"error": "internal error: RuntimeError"}
        assert headers["content-type"] == "application/json; charset=utf-8"
        (level, event, fields), = s.log.lines
        assert (level, event) == ("error", "internal error serving request")
        assert "data plane bug" in fields["error"] and "Traceback" in fields["trace"]
        status, _, _ = await read_response(reader)  # the connection goes on
        assert status == 200
        assert [o[2] for o in s.observed] == [500, 200]
        writer.close()


async def test_idle_connections_are_closed():
    async with Server(idle_timeout=0.2) as s:
        reader, writer = await s.connect()
        writer.write(get("/get?n=1&sleep=0.3"))  # busy longer than the idle timeout: not idle
        status, _, _ = await read_response(reader)
        assert status == 200
        t0 = time.monotonic()
        await assert_closed(reader)
        assert 0.1 < time.monotonic() - t0 < 2
        assert not s.fast.connections
        writer.close()


async def test_close_closes_every_connection():
    async with Server() as s:
        pairs = [await s.connect() for _ in range(3)]
        reader, writer = pairs[0]
        writer.write(get("/get?n=1"))
        await read_response(reader)
        assert len(s.fast.connections) == 3
        s.fast.close()
        for reader, writer in pairs:
            await assert_closed(reader)
            writer.close()
        assert not s.fast.connections


async def test_many_pipelined_requests_with_reading_paused():
    async with Server() as s:
        reader, writer = await s.connect()
        count = 2000  # ~100 KiB of requests queued behind a slow one
        writer.write(get("/get?n=0&sleep=0.1") + b"".join(get(f"/get?n={n}&pad={'p' * 20}")
                                                          for n in range(1, count)))
        for n in range(count):
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["query"]["n"] == str(n)
        writer.close()


async def test_a_client_that_reads_slowly_gets_every_answer():
    big = b"x" * (256 * 1024)

    def large(call):
        return Reply(200, big, content_type="application/octet-stream")

    async with Server(routes={("GET", "/get"): large}) as s:
        reader, writer = await s.connect()
        writer.write(b"".join(get(f"/get?n={n}") for n in range(20)))
        await asyncio.sleep(0.2)  # the server's write buffer fills: it must wait, not pile up
        for _ in range(20):
            status, _, body = await read_response(reader)
            assert status == 200 and body == big
        writer.close()


def test_routes_are_checked():
    with pytest.raises(ValueError):
        FastPath({("HEAD", "/get"): echo_get}, fallback=lambda: None)
    with pytest.raises(ValueError):
        FastPath({("GET", "get"): echo_get}, fallback=lambda: None)
    with pytest.raises(ValueError):
        FastPath({}, fallback=lambda: None, headers={"X-Bad": "a\r\nInjected: 1"})


def test_render_builds_one_answer():
    fast = FastPath({}, fallback=lambda: None, headers=(("X-Raftkv-Served-By", "n2"),), server_name="raftkv")
    data = fast.render(Reply(201, b"{}", content_type="text/plain", headers={"X-A": "1"}), keep_alive=False)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 201 Created" and body == b"{}"
    assert lines[1:3] == [b"Server: raftkv", b"X-Raftkv-Served-By: n2"]
    assert lines[3].startswith(b"Date: ")
    assert lines[4:] == [b"Content-Type: text/plain", b"X-A: 1", b"Content-Length: 2", b"Connection: close"]


@pytest.mark.parametrize("scenario", [
    test_fast_get_answers_with_the_common_headers, test_pipelined_mix_hands_over_to_aiohttp_in_order,
    test_a_request_with_a_body_is_handed_over, test_garbage_is_a_json_400_and_the_connection_closes,
    test_half_close_after_pipelined_requests_still_gets_every_answer, test_idle_connections_are_closed,
    test_many_pipelined_requests_with_reading_paused, test_a_client_that_reads_slowly_gets_every_answer,
    test_a_head_that_trickles_past_its_deadline_is_408_and_closed,
    test_a_head_that_never_ends_after_a_hand_over_is_408_and_closed,
    test_a_head_over_the_limit_after_a_hand_over_is_431, test_a_body_that_stalls_is_closed_after_the_idle_timeout,
    test_connections_over_the_cap_get_503_and_are_closed, test_a_head_split_byte_by_byte,
], ids=lambda f: f.__name__.removeprefix("test_"))
def test_on_uvloop(scenario):
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


@given(st.lists(st.tuples(st.sampled_from(["key", "value", "stale", "", "k=", "a b", "é"]),
                          st.text(alphabet="abc=&%+ 9é", max_size=6)), max_size=5),
       st.booleans())
def test_query_decoding_matches_parse_qsl(pairs, quote_them):
    from urllib.parse import parse_qsl, quote, urlencode

    from raftkv.http.api.params import parse_query
    query = urlencode(pairs) if quote_them else "&".join(f"{quote(n, safe='=')}={quote(v, safe='=')}"
                                                         for n, v in pairs)
    expected: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        expected.setdefault(name, value)
    assert parse_query(query.encode("ascii")) == expected


@given(st.text(max_size=20), st.text(max_size=40), st.integers(0, 2**63), st.integers(0, 10**7))
def test_hand_built_answers_match_the_json_encoder(key, value, index, size):
    from raftkv.http.api.replies import json_reply, value_reply, written_reply
    try:
        expected = json_reply("n1", {"key": key, "value": value, "level": "lease"})
    except UnicodeEncodeError:
        return  # a lone surrogate: neither can encode it
    assert value_reply("n1", key, value, "lease") == expected
    assert written_reply("n1", key, index, size) == json_reply("n1", {"key": key, "index": index, "size": size})
