"""The HTTP fast path (raftkv/http/server/fastpath.py) answers GET /get and GET /set
exactly as the aiohttp path does (refusals of input that is not UTF-8, and
absolute-form targets, included), and hands every other request, on the
same connection and in order, to aiohttp."""

from __future__ import annotations

import socket

import pytest

from cluster import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def node(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    return n1


class Conn:
    """A raw keep-alive HTTP/1.1 connection that reads whole answers."""

    def __init__(self, node):
        self.sock = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
        self.buf = b""

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def get(target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def comparable(answer):
    status, headers, body = answer
    return status, {k: v for k, v in headers.items() if k != "date"}, body


CASES = ["/set?key=k1&value=v1", "/get?key=k1", "/get?key=k1&stale=true", "/get?key=absent",
         "/get?key=", "/get?key=k1&stale=perhaps", "/set?key=k2", "/set?value=x",
         "/set?key=sp+ace&value=caf%C3%A9+%26+more", "/get?key=sp%20ace", "/get?key=%FF%FE",
         "/set?key=k3&value=%ED%A0%80", "/get?%C0%AF=1&key=k1", "/set?key=%00raftkv/http/n1&value=x",
         "/get?key=k1&key=k2", "http://other.example/get?key=k1", "HTTPS://other.example:9/set?key=k4&value=4"]


def test_answers_match_the_aiohttp_path(node):
    hot, slow = Conn(node), Conn(node)
    try:
        slow.send(get("/status"))  # any other route moves this connection to aiohttp
        assert slow.answer()[0] == 200
        for target in CASES:
            hot.send(get(target))
            a = comparable(hot.answer())
            slow.send(get(target))
            b = comparable(slow.answer())
            # the write's index differs between the two; everything else is the same
            if "/set?" in target and a[0] == 200:
                assert b'"index": ' in a[2] and b'"index": ' in b[2]
                a = (a[0], a[1], a[2].split(b'"index"')[0])
                b = (b[0], b[1], b[2].split(b'"index"')[0])
                a[1].pop("content-length"), b[1].pop("content-length")
            assert a == b, target
        assert node.value("sp ace") == "café & more"
        assert node.value("\ufffd") is None and node.value("k3") is None
    finally:
        hot.close()
        slow.close()


def test_pipelined_requests_are_answered_in_order_across_the_hand_over(node):
    c = Conn(node)
    try:
        body = b'{"piped": "yes"}'
        c.send(get("/set?key=a&value=1"), get("/get?key=a"),
               b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body,
               get("/get?key=piped"), get("/status"))
        assert c.answer()[0] == 200
        status, _, data = c.answer()
        assert status == 200 and b'"value": "1"' in data
        assert c.answer()[0] == 200
        status, _, data = c.answer()
        assert status == 200 and b'"value": "yes"' in data
        status, _, data = c.answer()
        assert status == 200 and b'"state": "Leader"' in data
    finally:
        c.close()


def test_connection_close_and_half_close(node):
    c = Conn(node)
    try:
        c.send(get("/set?key=b&value=2", "Connection: close\r\n"))
        status, headers, _ = c.answer()
        assert status == 200 and headers["connection"] == "close"
        assert c.closed_by_server()
    finally:
        c.close()
    c = Conn(node)
    try:
        c.send(get("/get?key=b"))
        c.sock.shutdown(socket.SHUT_WR)
        status, _, data = c.answer()
        assert status == 200 and b'"value": "2"' in data
    finally:
        c.close()


def test_requests_it_does_not_serve_go_to_aiohttp(node):
    big = "v" * (2 * 1024 * 1024)
    c = Conn(node)
    try:
        c.send(get("/get?key=k", "Content-Length: 3\r\n")[:-2] + b"\r\nabc")  # a GET with a body
        assert c.answer()[0] in (200, 404)
        c.send(get(f"/set?key=big&value={big}"))  # a head over HTTP_MAX_HEAD_BYTES (64 KiB)
        status, headers, data = c.answer()
        assert status == 431 and b'"param": "request"' in data and b"HTTP_MAX_HEAD_BYTES" in data
        assert headers["connection"] == "close" and headers["x-raftkv-served-by"] == "n1"
    finally:
        c.close()
    c = Conn(node)
    try:
        c.send(b"GET /get?key=k HTTP/1.0\r\n\r\n")
        assert c.answer()[0] in (200, 404)
    finally:
        c.close()
    c = Conn(node)
    try:
        c.send(b"GARBAGE\r\n\r\n")
        status, _, data = c.answer()
        assert status == 400 and b"error" in data
    finally:
        c.close()
    assert node.set("after", "ok")["size"] == 2 and node.value("after") == "ok"


def test_a_follower_forwards_hot_requests_to_the_leader(cluster):
    leader = cluster.form(3)
    follower = next(n for n in cluster.running() if n is not leader)
    c = Conn(follower)
    try:
        c.send(get("/set?key=f&value=1"))
        status, headers, data = c.answer()
        assert status == 200 and headers["x-raftkv-served-by"] == leader.id
        c.send(get("/get?key=f&level=strong"))   # through the log: the leader's
        status, headers, data = c.answer()
        assert status == 200 and headers["x-raftkv-served-by"] == leader.id and b'"value": "1"' in data
        # a linearizable read the follower serves itself, with the index the leader confirmed
        c.send(get("/get?key=f"))
        status, headers, data = c.answer()
        assert status == 200 and headers["x-raftkv-served-by"] == follower.id and b'"value": "1"' in data
    finally:
        c.close()
