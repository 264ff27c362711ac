"""Bad input gets its documented answer (never a 500), and the node keeps
serving: malformed HTTP parameters and bodies, oversized values, and garbage
on the Raft port. Hostile HTTP is sent as an attacker sends it, raw bytes on
a socket: input that is not UTF-8 (never stored as U+FFFD), JSON nested too
deep or holding a lone surrogate, absolute-form targets on a follower, what
the HTTP parser refuses (always a JSON 4xx naming the problem), slow heads,
idle connections and too many connections (HTTP_HEAD_TIMEOUT,
HTTP_MAX_HEAD_BYTES, HTTP_MAX_HEADERS, HTTP_IDLE_TIMEOUT,
HTTP_MAX_CONNECTIONS), with and without HTTP workers."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import pytest
from cluster import wait_until

from raftkv.raft.messages import AppendEntries, Entry
from raftkv.transport.codec import encode, hello

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def node(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    return n1


def expect(resp, status: int, param: str | None = None) -> dict:
    assert resp.status == status, resp
    body = resp.json()
    assert "error" in body, body
    if param is not None:
        assert body.get("param") == param, body
    return body


def test_bad_http_parameters(node):
    n = node
    expect(n.get("/set", value="v"), 400, "key")
    expect(n.get("/set", key="", value="v"), 400, "key")
    expect(n.get("/set", key="k"), 400, "value")
    expect(n.get("/get"), 400, "key")
    expect(n.get("/remove"), 400, "key")
    expect(n.get("/get", key="k", stale="perhaps"), 400, "stale")
    expect(n.get("/set", key="\x00raftkv/http/n1", value="x"), 400, "key")
    expect(n.get("/get", key="absent"), 404)

    expect(n.get("/join"), 400, "nodeId")
    expect(n.get("/join", nodeId="", raftPort="9001"), 400, "nodeId")
    expect(n.get("/join", nodeId="bad id!", raftPort="9001"), 400, "nodeId")
    expect(n.get("/join", nodeId="n2"), 400, "raftPort")
    expect(n.get("/join", nodeId="n2", raftPort="abc"), 400, "raftPort")
    expect(n.get("/join", nodeId="n2", raftPort="70000"), 400, "raftPort")
    expect(n.get("/join", nodeId="n2", raftAddr="no-port"), 400, "raftAddr")
    expect(n.request("POST", "/join", body=b"{not json", headers={"Content-Type": "application/json"}),
           400, "body")
    expect(n.request("POST", "/join", json_body={"addr": "127.0.0.1:1"}), 400, "id")
    expect(n.request("POST", "/join", json_body=["n2"]), 400, "body")

    expect(n.request("POST", "/key", body=b"nope", headers={"Content-Type": "application/json"}), 400, "body")
    expect(n.request("POST", "/key", json_body={"a": 1}), 400, "a")
    expect(n.request("POST", "/key", json_body={}), 400, "body")
    expect(n.request("POST", "/key"), 400, "body")
    expect(n.request("POST", "/remove-peer"), 400, "nodeId")
    expect(n.request("POST", "/remove-peer", {"nodeId": "ghost"}), 404, "nodeId")
    expect(n.request("POST", "/transfer-leadership", {"to": "n1"}), 400, "to")
    expect(n.get("/no/such/route"), 404)
    expect(n.request("DELETE", "/status"), 405)

    # values and bodies over the 1 MiB limit: 413, whichever way they come
    big = "x" * (2 * MIB)
    expect(n.request("POST", "/set", {"key": "big"}, body=big.encode(),
                     headers={"Content-Type": "text/plain"}), 413)
    expect(n.request("POST", "/key", json_body={"big": big}), 413)
    expect(n.request("POST", "/set", body=f"key=big&value={big}".encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"}), 413)
    # a query string is part of the request head (HTTP_MAX_HEAD_BYTES, 64 KiB):
    # a larger value is a JSON 431 that says to send it in a body
    for value in (big, "x" * (100 * 1024)):
        body = expect(n.get("/set", key="huge", value=value), 431, "request")
        assert "HTTP_MAX_HEAD_BYTES" in body["error"] and "POST" in body["error"], body
    assert n.get("/set", key="in-head", value="z" * (60 * 1024)).status == 200
    # just under the limit is fine in a body
    ok = "y" * (MIB - 100)
    assert n.request("POST", "/set", {"key": "large"}, body=ok.encode(),
                     headers={"Content-Type": "text/plain"}).status == 200
    assert n.value("large") == ok

    # other ways to write work too
    assert n.request("POST", "/set", json_body={"key": "j", "value": "son"}).status == 200
    assert n.request("POST", "/set", body=b"key=f&value=orm",
                     headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    assert n.request("POST", "/set", {"key": "raw"}, body="bödy".encode(),
                     headers={"Content-Type": "text/plain"}).status == 200
    assert n.request("POST", "/set", {"key": "doc"}, body=b'{"x": 1}',
                     headers={"Content-Type": "text/plain"}).status == 200
    assert (n.value("j"), n.value("f"), n.value("raw")) == ("son", "orm", "bödy")
    assert n.value("doc") == '{"x": 1}'

    # after all that the node still serves, and never answered 500
    assert n.set("still", "alive")["served_by"] == "n1"
    assert "internal error" not in n.log()
    assert "Traceback" not in n.log()


def _send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):  # the node may reset the connection
            s.recv(1)


def test_garbage_on_the_raft_port(cluster, node):
    n2 = cluster.add("n2").wait_ready()
    assert node.get("/join", nodeId="n2", raftPort=str(n2.raft_port)).status == 200
    cluster.wait_voters(["n1", "n2"])
    for target in (node, n2):
        _send_raw(target.raft_port, os.urandom(4096))
        _send_raw(target.raft_port, b"\xff\xff\xff\xff" + os.urandom(64))   # absurd frame length
        frame = encode(AppendEntries(1, "evil", "127.0.0.1:1", 0, 0, (Entry(1, 1, data=b"x" * 100),), 0))
        _send_raw(target.raft_port, encode(hello("evil", "127.0.0.1:1")) + frame[:len(frame) // 2])
        target.wait_for_log("[ERROR] raft.net: failed to decode incoming command: error=")
    # the cluster keeps serving
    r = n2.set("after-garbage", "ok")
    assert r["served_by"] == "n1"
    assert n2.value("after-garbage") == "ok"
    assert node.is_leader() and node.status()["term"] == 2


# --- hostile HTTP, as an attacker sends it: raw bytes on a socket -------------------

class Raw:
    """One connection to a node's HTTP port: raw bytes out, whole answers back."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        """True once the server closes (within the socket's timeout)."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"server closed the connection; unread: {self.buf[:200]!r}")
        self.buf += data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def raw_get(target: str | bytes, *extra: bytes) -> bytes:
    if isinstance(target, str):
        target = target.encode()
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in extra) + b"\r\n"


def raw_post(target: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"POST " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def ask(port: int, data: bytes, after: bytes | None = None) -> tuple[int, dict, dict]:
    """Send ``data`` on a new connection (after the request ``after`` has
    been answered on it: then aiohttp parses ``data``), return status,
    headers and the JSON body. Every answer must be JSON."""
    with Raw(port) as conn:
        if after is not None:
            conn.send(after)
            assert conn.answer()[0] == 200
        conn.send(data)
        status, headers, body = conn.answer()
    assert headers["content-type"].startswith("application/json"), (status, headers, body)
    return status, headers, json.loads(body)


def refused(answer: tuple[int, dict, dict], status: int, *words: str, param: str | None = None) -> dict:
    got, _, doc = answer
    assert got == status, answer
    for word in words:
        assert word in doc["error"], doc
    if param is not None:
        assert doc.get("param") == param, doc
    return doc


def no_key(node, *keys: str) -> None:
    for key in keys:
        assert node.value(key) is None, key


def quiet_log(node) -> None:
    log = node.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_a_query_or_path_that_is_not_utf8_is_a_400_and_creates_no_key(node):
    p = node.http_port
    # the fast path: %ff and %fe used to be the same key (U+FFFD)
    refused(ask(p, raw_get("/set?key=%ff&value=first")), 400, "parameter key is not valid UTF-8", param="key")
    refused(ask(p, raw_get("/set?key=%fe&value=second")), 400, "parameter key is not valid UTF-8", param="key")
    refused(ask(p, raw_get("/get?key=%ff")), 400, "parameter key is not valid UTF-8", param="key")
    for bad in ("%ED%A0%80", "%C0%AF", "%E2%82", "%F4%90%80%80"):  # surrogate, overlong, cut short, over U+10FFFF
        refused(ask(p, raw_get(f"/set?key=k&value={bad}")), 400, "parameter value is not valid UTF-8",
                param="value")
    refused(ask(p, raw_get("/get?%ff=1&key=k")), 400, "parameter name %ff is not valid UTF-8")
    refused(ask(p, raw_get(b"/get?key=\xff")), 400, "Invalid char in url", param="request")  # llhttp's own
    # the aiohttp routes: the same answers
    refused(ask(p, raw_post("/set?key=%ff", b"v", b"text/plain")), 400, "parameter key", param="key")
    refused(ask(p, raw_post("/set", b"key=k&value=%ff", b"application/x-www-form-urlencoded")), 400,
            "parameter value is not valid UTF-8", param="value")
    refused(ask(p, raw_get("/remove?key=%ff")), 400, param="key")
    refused(ask(p, raw_get("/join?nodeId=%ff&raftPort=9999")), 400, param="nodeId")
    refused(ask(p, raw_get("/get?key=%ff"), after=raw_get("/status")), 400, param="key")
    refused(ask(p, raw_get("/key/%ff")), 400, "path is not valid UTF-8", param="path")
    refused(ask(p, b"DELETE /key/%C0%AF HTTP/1.1\r\nHost: x\r\n\r\n"), 400, param="path")
    for target in ("/status", "/get?key=k"):  # aiohttp's route, the fast path's
        refused(ask(p, raw_get(target, b"Authorization: Bearer \xff")), 400, "header Authorization is not valid UTF-8",
                param="Authorization")
    # nothing was written: not U+FFFD, not the escapes as text
    no_key(node, "\ufffd", "%ff", "%fe", "k")
    assert node.set("after", "ok")["served_by"] == "n1"
    quiet_log(node)


def test_a_lone_surrogate_in_a_json_body_is_a_400_naming_the_field(node):
    p = node.http_port
    refused(ask(p, raw_post("/key", b'{"k": "\\ud800"}')), 400, "field k is not valid UTF-8", param="k")
    refused(ask(p, raw_post("/key", b'{"ok": "1", "\\udfff": "v"}')), 400, "field name", param="\\udfff")
    refused(ask(p, raw_post("/set", b'{"key": "k", "value": "x\\udc00y"}')), 400, param="value")
    refused(ask(p, raw_post("/join", b'{"id": "\\ud800", "addr": "127.0.0.1:1"}')), 400, param="id")
    # a surrogate as UTF-8 bytes, which json.loads alone would take
    refused(ask(p, raw_post("/key", b'{"k": "\xed\xa0\x80"}')), 400, "not valid UTF-8", param="body")
    refused(ask(p, raw_post("/key", b'{"k": "\xc0\xaf"}')), 400, "not valid UTF-8", param="body")
    no_key(node, "k", "ok")
    # a surrogate pair is one character, and fine
    status, _, doc = ask(p, raw_post("/key", b'{"smile": "\\ud83d\\ude00"}'))
    assert status == 200, doc
    assert node.value("smile") == "\U0001F600"
    quiet_log(node)


@pytest.mark.parametrize("target", ["/key", "/set", "/join", "/remove", "/transfer-leadership", "/remove-peer",
                                    "/_raftkv/register"])
def test_json_nested_too_deep_is_a_400_on_every_route_with_a_json_body(node, target):
    p = node.http_port
    refused(ask(p, raw_post(target, b"[" * 100_000)), 400, "nested deeper than 32 levels", param="body")
    refused(ask(p, raw_post(target, b'{"key": ' + b"[" * 40 + b"]" * 40 + b"}")), 400,
            "nested deeper than 32 levels", param="body")
    refused(ask(p, raw_post(target, b'{"key": ' + b'{"a": ' * 50 + b"1" + b"}" * 50 + b"}")), 400,
            "nested deeper than 32 levels", param="body")
    assert node.set("still", "serving")["served_by"] == "n1"
    quiet_log(node)


# the parser's refusals, first request on a connection or after a hand-over to aiohttp
PARSER_CASES = {
    "bad chunk size": (b"POST /key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
                       400, "chunk size"),
    "chunk size overflow": ((b"POST /key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"ffffffffffffffffffffff\r\n"), 400, "Chunk size overflow"),
    "bad chunk after a good one": (((b"POST /key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b'5\r\n{"a":\r\n'), b"1x\r\n"), 400, "bad request body"),
    "10,000 headers": (raw_get("/status", *(b"X-H%d: v" % i for i in range(10_000))), 431, "HTTP_MAX_"),
    "1 MB header": (raw_get("/status", b"X-Big: " + b"a" * 1_000_000), 431, "HTTP_MAX_HEAD_BYTES"),
    "200 headers": (raw_get("/status", *(b"X-H%d: v" % i for i in range(200))), 431, "HTTP_MAX_HEADERS"),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, ""),
    "NUL in a header": (raw_get("/status", b"X-A: a\x00b"), 400, ""),
    "space before colon": (raw_get("/status", b"X-A : b"), 400, ""),
    "two Content-Length": ((b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                            b"Content-Length: 3\r\n\r\n{}"), 400, ""),
}


@pytest.mark.parametrize("after", [None, "/status"], ids=["first", "after-hand-over"])
def test_what_the_http_parser_refuses_is_a_json_4xx_and_the_connection_closes(node, after):
    for name, (data, status, words) in PARSER_CASES.items():
        with Raw(node.http_port) as conn:
            if after is not None:
                conn.send(raw_get(after))
                assert conn.answer()[0] == 200
            try:
                for part in data if isinstance(data, tuple) else (data,):  # parts: separate writes
                    conn.send(part)
            except ConnectionError:
                pass  # refused before it was all sent: the answer is still there to read
            got, headers, body = conn.answer()
            assert headers["content-type"].startswith("application/json"), (name, got, body)
            doc = json.loads(body)
            assert got == status and words in doc["error"], (name, got, doc)
            assert conn.closed_by_server(), name
    assert node.set("still", "serving")["served_by"] == "n1"
    quiet_log(node)


def test_an_absolute_form_target_on_a_follower_is_forwarded_by_its_path_alone(cluster):
    leader = cluster.form(3)
    follower = cluster["n2"]
    p = follower.http_port
    status, _, doc = ask(p, raw_get("http://evil.example:1/set?key=abs&value=1"))
    assert status == 200 and doc["served_by"] == leader.id, doc
    status, _, doc = ask(p, raw_get("http://evil.example/get?key=abs"))
    assert status == 200 and doc["value"] == "1", doc
    # the aiohttp routes forward it too
    status, _, doc = ask(p, raw_post("http://evil.example/key", b'{"abs2": "2"}'))
    assert status == 200, doc
    status, _, doc = ask(p, raw_get("https://evil.example/key/abs2"))
    assert status == 200 and doc == {"abs2": "2"}, doc
    status, _, doc = ask(p, raw_get("http://evil.example/join?nodeId=n9&raftPort=notaport"))
    assert status == 400 and doc["param"] == "raftPort", doc
    assert leader.value("abs") == "1" and leader.value("abs2") == "2"
    for node in cluster.running():
        assert "failed to forward" not in node.log()
        quiet_log(node)


LIMITS = {"HTTP_HEAD_TIMEOUT": "1s", "HTTP_IDLE_TIMEOUT": "2s", "HTTP_MAX_CONNECTIONS": "16",
          "HTTP_MAX_HEAD_BYTES": "8KiB", "HTTP_MAX_HEADERS": "50"}


def _trickle(conn: Raw, data: bytes, pause: float, limit: float = 20.0) -> float:
    """Send ``data`` a byte at a time until the server answers (or ``limit``
    seconds pass); the seconds from the first byte to the answer."""
    t0 = time.monotonic()
    conn.sock.settimeout(pause)
    for byte in data:
        if time.monotonic() - t0 > limit:
            break
        try:
            conn.sock.sendall(bytes([byte]))
        except OSError:
            break
        try:
            got = conn.sock.recv(65536)
        except TimeoutError:
            continue
        conn.buf += got
        break
    conn.sock.settimeout(10)
    return time.monotonic() - t0


@pytest.fixture
def limited(cluster):
    n1 = cluster.add("n1", bootstrap=True, env=LIMITS).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    return n1


@pytest.mark.parametrize("after", [None, "/status"], ids=["fast-path", "after-hand-over"])
def test_a_slow_head_is_408_once_its_deadline_passes_however_it_trickles(limited, after):
    with Raw(limited.http_port) as conn:
        if after is not None:
            conn.send(raw_get(after))
            assert conn.answer()[0] == 200
        # a header line every 0.1 s: never idle, never complete
        elapsed = _trickle(conn, b"GET /get?key=k HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 400, 0.1)
        status, headers, body = conn.answer()
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body) == {"error": "request head not complete 1s after it began (HTTP_HEAD_TIMEOUT)",
                                    "param": "request", "served_by": "n1"}
        assert 0.8 < elapsed < 5, elapsed
        assert conn.closed_by_server()
    assert limited.set("after", "slow")["served_by"] == "n1"


@pytest.mark.parametrize("after", [None, "/status"], ids=["fast-path", "after-hand-over"])
def test_a_head_over_http_max_head_bytes_is_431(limited, after):
    head = b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(30))
    assert len(head) > 8192
    for data in (head + b"\r\n", head):  # complete, or still coming
        with Raw(limited.http_port) as conn:
            if after is not None:
                conn.send(raw_get(after))
                assert conn.answer()[0] == 200
            conn.send(data)
            status, _, body = conn.answer()
            doc = json.loads(body)
            assert status == 431 and "over the limit of 8192 bytes (HTTP_MAX_HEAD_BYTES)" in doc["error"], doc
            assert conn.closed_by_server()
    refused(ask(limited.http_port, raw_get("/status", *(b"X-H%d: v" % i for i in range(60)))), 431,
            "more than 50 header fields (HTTP_MAX_HEADERS)")


def test_an_idle_connection_is_closed_after_http_idle_timeout(limited):
    for after in (raw_get("/get?key=absent"), raw_get("/status")):  # fast path, and aiohttp's
        with Raw(limited.http_port) as conn:
            conn.send(after)
            assert conn.answer()[0] in (200, 404)
            t0 = time.monotonic()
            assert conn.closed_by_server()
            assert 1.5 < time.monotonic() - t0 < 8


def test_connections_over_http_max_connections_get_a_503_and_are_closed(limited):
    held: list[Raw] = []
    try:
        def one_more() -> bool:
            conn = Raw(limited.http_port)
            conn.send(raw_get("/get?key=absent"))
            status, _, _ = conn.answer()
            if status == 503:  # one of the harness's connections not yet gone: try again
                conn.close()
                return False
            held.append(conn)
            return True
        for _ in range(16):
            wait_until(one_more, 10, what="a connection within the cap")
        with Raw(limited.http_port) as conn:
            status, headers, body = conn.answer()  # before it sends anything
            assert status == 503 and headers["connection"] == "close"
            assert json.loads(body) == {"error": "too many connections (HTTP_MAX_CONNECTIONS=16)",
                                        "served_by": "n1"}
            assert conn.closed_by_server()
        # the ones it holds are served still
        held[0].send(raw_get("/set?key=capped&value=1"))
        assert held[0].answer()[0] == 200
        for conn in held[:4]:
            conn.close()
        del held[:4]
        wait_until(lambda: limited.value("capped") == "1", 10, what="a new connection once some closed")
    finally:
        for conn in held:
            conn.close()


def test_http_workers_answer_hostile_input_alike(cluster):
    n1 = cluster.add("n1", bootstrap=True, env={"HTTP_WORKERS": "2", **LIMITS}).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    wait_until(lambda: len([p for p in n1.status()["processes"] if p["role"] == "http-worker"]) == 2, 20,
               what="both workers")
    p = n1.http_port
    # several connections each: the kernel spreads them over both workers
    for _ in range(3):
        refused(ask(p, raw_get("/set?key=%ff&value=first")), 400, "parameter key is not valid UTF-8", param="key")
        refused(ask(p, raw_post("/key", b'{"k": "\\ud800"}')), 400, param="k")
        refused(ask(p, raw_post("/key", b"[" * 100_000)), 400, "nested deeper than 32 levels")
        refused(ask(p, PARSER_CASES["bad chunk size"][0], after=raw_get("/status")), 400, "chunk size")
        refused(ask(p, PARSER_CASES["1 MB header"][0]), 431, "HTTP_MAX_HEAD_BYTES")
        refused(ask(p, PARSER_CASES["200 headers"][0], after=raw_get("/status")), 431, "HTTP_MAX_HEADERS")
        status, _, doc = ask(p, raw_get("http://evil.example/set?key=abs&value=1"))
        assert status == 200, doc
    with Raw(p) as conn:
        _trickle(conn, b"GET /get?key=k HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 400, 0.1)
        assert conn.answer()[0] == 408
    no_key(n1, "\ufffd", "k")
    assert n1.value("abs") == "1"
    quiet_log(n1)
