"""Fuzzing a live cluster's HTTP ports: random and mutated requests (real
ones with bytes flipped, CR, LF and NUL inserted, spans cut out, thousands of
headers, bad and non-UTF-8 percent escapes, absolute-form targets, broken
chunked bodies, pipelines of them, noise) thrown at a follower (and some at
the leader) for a bounded time, while a writer writes through that follower
and slow clients trickle heads at it and a burst of connections goes over
another member's HTTP_MAX_CONNECTIONS.

After each batch: every node is up, every key the writer was told was
written reads back, no answer was a 5xx but the documented 503s (no leader,
too many connections), every error has a JSON body (and every other answer
too, but /metrics' text and /ui's page), no slow head outlived
HTTP_HEAD_TIMEOUT, and the fuzzed node's RSS stays within a bound. The seed
is fixed (RAFTKV_FUZZ_SEED replays another), RAFTKV_HTTP_FUZZ_SECONDS sets
the time; both are printed with the figures."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import socket
import threading
import time

import pytest
from cluster import Writer, wait_until

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("RAFTKV_FUZZ_SEED", "2718"))
SECONDS = float(os.environ.get("RAFTKV_HTTP_FUZZ_SECONDS", "15"))
MAX_REQUESTS = 20_000
BATCH = 200
KEY = "k" * 32  # RAFT_CLUSTER_KEY: admin routes are closed to the fuzzer, so membership cannot change
HEAD_TIMEOUT = 3.0
CAP = 48
MIB = 1024 * 1024
RSS_GROWTH = 96 * MIB  # over the node's RSS once warmed up

def _post(target: bytes, ctype: bytes, body: bytes) -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


REQUESTS = [
    b"GET /get?key=fz-a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /get?key=fz-a&stale=true HTTP/1.1\r\nHost: x\r\nUser-Agent: fuzz\r\n\r\n",
    b"GET /set?key=fz-a&value=caf%C3%A9+1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /set?key=fz-b&value=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    _post(b"/set?key=fz-c", b"text/plain", b"hello"),
    _post(b"/set", b"application/x-www-form-urlencoded", b"key=fz-d&value=4x"),
    _post(b"/set", b"application/json", b'{"key": "fz-e", "value": "\\u00e9"}'),
    _post(b"/key", b"application/json", b'{"fz-f": "1", "fz-g": "22"}'),
    (b"POST /key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
     b'd\r\n{"fz-h": "3"}\r\n0\r\n\r\n'),
    b"GET /key/fz-f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /key/fz-g HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /remove?key=fz-b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"GET /peers HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /join?nodeId=fz9&raftPort=9 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /transfer-leadership HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /debug/events?since=0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n",
]
INSERTS = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b":", b"%", b"%f", b"%zz", b"%ff", b"%ED%A0%80", b"%C0%AF",
           b"\xff", b"\xc3", b"\xed\xa0\x80", b"?", b"&", b"=", b"\t", b"\r\n\r\n", b"HTTP/1.1", b"#", b";"]
CHUNKED = [b"zz\r\n", b"ffffffffffffffffffffff\r\n", b"-1\r\n", b"5\r\nab", b"5;ext=\xff\r\nabcde\r\n0\r\n\r\n",
           b"3\r\nabc\r\n", b"0\r\nTrailer: \x00\r\n\r\n", b"1\r\n\r\n\r\n", b" 5\r\nabcde\r\n0\r\n\r\n"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(11)
        if kind == 0 and data:      # flip bits
            for _ in range(rng.randrange(1, 5)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:             # insert a troublesome token
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.choice(INSERTS)
        elif kind == 2 and data:    # cut a span out
            i = rng.randrange(len(data))
            del data[i:i + rng.randrange(1, 16)]
        elif kind == 3:             # thousands of header lines
            line = rng.choice([b"X-F: y\r\n", b"a:\r\n", b"Cookie: " + b"c" * rng.randrange(1, 200) + b"\r\n"])
            i = data.find(b"\r\n") + 2
            data[i:i] = line * rng.choice([50, 120, 1000, 20_000])
        elif kind == 4:             # one huge header value
            i = data.find(b"\r\n") + 2
            data[i:i] = b"X-Big: " + b"v" * rng.choice([8_000, 70_000, 300_000]) + b"\r\n"
        elif kind == 5:             # absolute-form target
            i = data.find(b" ") + 1
            data[i:i] = rng.choice([b"http://evil.example", b"https://u:p@evil.example:1", b"HTTP://h", b"ftp://h",
                                    b"http://", b"//h"])
        elif kind == 6:             # a bad escape or raw bytes in the query
            i = data.find(b"?") + 1 or data.find(b" ", data.find(b" ") + 1)
            if i > 0:
                data[i:i] = rng.choice([b"key=%ff&", b"%fe=1&", b"v=%ED%A0%80&", b"v=%C0%AF&", b"k=%E2%82&",
                                        b"k=%&", b"k=%%&", b"k=\xff&"])
        elif kind == 7:             # a broken chunked body
            head_end = data.find(b"\r\n\r\n")
            if head_end > 0:
                data[head_end + 4:] = b""
                data[head_end + 2:head_end + 2] = b"Transfer-Encoding: chunked\r\n"
                data += rng.choice(CHUNKED)
        elif kind == 8:             # a lying Content-Length
            head_end = data.find(b"\r\n\r\n")
            if head_end > 0:
                data[head_end + 2:head_end + 2] = b"Content-Length: " + rng.choice(
                    [b"-1", b"99999999999999999999", b"1, 2", b"0x10", b"5", b" 3 "]) + b"\r\n"
        elif kind == 9:             # truncate
            data = data[:rng.randrange(len(data) + 1)]
        else:                       # a JSON body gone bad: deep, lone surrogates
            body = rng.choice([b"[" * 50_000, b'{"a": ' * 40 + b"1" + b"}" * 40, b'{"k": "\\ud800"}',
                               b'{"\\udfff": "v"}', b'{"k": "\xed\xa0\x80"}', b'{"k": [' * 33 + b"]" * 33 + b"}"])
            target = rng.choice([b"/key", b"/set", b"/join", b"/remove"])
            data = bytearray(b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return bytes(data)


def payload(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.05:
        return rng.randbytes(rng.randrange(1, 512))
    parts = rng.randrange(1, 4) if roll < 0.25 else 1  # sometimes a pipeline
    return b"".join(mutate(rng, rng.choice(REQUESTS)) if rng.random() < 0.85 else rng.choice(REQUESTS)
                    for _ in range(parts))


def send(port: int, data: bytes) -> tuple[bytes, bool]:
    """Send ``data``, half-close, read to the end (the server closes once
    it has answered what it could frame). The bytes, and whether the
    connection was reset (the last answer may then be cut short: the node
    closed while bytes it will never read were still coming)."""
    out = bytearray()
    reset = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with contextlib.suppress(OSError):  # refused before it was all sent: read what was answered
            s.sendall(data)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and not _ends_with_close(out):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionError:
            reset = True
    return bytes(out), reset


def _ends_with_close(raw: bytes) -> bool:
    """Whether ``raw`` ends with a whole answer that says Connection: close
    (as an HTTP client would, stop there rather than wait for the close)."""
    try:
        got = answers(raw)
    except AssertionError:
        return False
    if not got:
        return False
    head_end = raw.rfind(b"\r\n\r\n", 0, len(raw) - len(got[-1][2]))
    last_head = raw[:head_end].rsplit(b"HTTP/", 1)[-1].lower()
    return b"\r\nconnection: close" in last_head


def answers(raw: bytes, reset: bool = False) -> list[tuple[int, str, bytes]]:
    """The answers in a connection's bytes: (status, content type, body)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            assert reset, f"a cut answer head: {raw[:300]!r}"
            break
        lines = head.decode("latin-1").split("\r\n")
        # aiohttp answers a request line without a version (HTTP/0.9) in kind
        assert lines[0].startswith(("HTTP/1.", "HTTP/0.9 ")), lines[0]
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            assert reset, f"a cut answer body: {raw[:300]!r}"
            break
        out.append((status, headers.get("content-type", ""), rest[:length]))
        raw = rest[length:]
    return out


def check(answer: tuple[int, str, bytes], seen: collections.Counter, request: bytes) -> None:
    status, ctype, body = answer
    seen[status] += 1
    what = f"{status} {ctype} {body[:300]!r} to {request[:300]!r} (seed {SEED})"
    json_body = ctype.startswith("application/json")
    if not json_body:
        # only the Prometheus text of /metrics and the dashboard's page are not JSON
        assert status < 300 and ctype.startswith(("text/plain", "text/html")), what
        return
    doc = json.loads(body)
    if status >= 400:
        assert isinstance(doc, dict) and doc.get("error"), what
    if status >= 500:
        documented = status == 503 and ("outcome_unknown" in doc or doc["error"].startswith("too many connections"))
        assert documented, what


class SlowHeads(threading.Thread):
    """Keeps a few connections trickling a head, a byte every 100 ms; the
    node must close each within HTTP_HEAD_TIMEOUT (and the lingering after
    its 408)."""

    def __init__(self, port: int, count: int = 6) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.count = count
        self.stop_flag = threading.Event()
        self.closed = 0
        self.answered_408 = 0
        self.overdue: list = []

    def run(self) -> None:
        head = b"GET /get?key=fz-slow HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 1000
        socks: list[tuple[socket.socket, float, int]] = []
        got: dict[socket.socket, bytes] = {}
        try:
            while not self.stop_flag.is_set():
                while len(socks) < self.count:
                    try:
                        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    except OSError as exc:
                        self.overdue.append(f"cannot connect: {exc}")
                        return
                    s.setblocking(False)
                    socks.append((s, time.monotonic(), 0))
                kept = []
                for s, started, sent in socks:
                    done = False
                    try:
                        s.send(head[sent:sent + 1])
                        sent += 1
                        chunk = s.recv(65536)
                        got[s] = got.get(s, b"") + chunk
                        done = chunk == b""
                    except BlockingIOError:
                        done = False  # nothing to read or write yet: next round
                    except OSError:
                        done = True
                    age = time.monotonic() - started
                    if done:
                        self.closed += 1
                        answer = answers(got.pop(s, b""), reset=True)
                        if answer:
                            status, ctype, body = answer[0]
                            assert status == 408 and ctype.startswith("application/json"), answer
                            assert "HTTP_HEAD_TIMEOUT" in json.loads(body)["error"], answer
                            self.answered_408 += 1
                        if age > HEAD_TIMEOUT + 3:
                            self.overdue.append(age)
                        s.close()
                    elif age > HEAD_TIMEOUT + 10:
                        self.overdue.append(age)
                        got.pop(s, None)
                        s.close()
                    else:
                        kept.append((s, started, sent))
                socks = kept
                self.stop_flag.wait(0.1)
        except AssertionError as exc:
            self.overdue.append(f"a slow head's answer: {exc}")
        finally:
            for s, _, _ in socks:
                s.close()


def burst(port: int, seen: collections.Counter) -> int:
    """Open more connections than HTTP_MAX_CONNECTIONS at once; the ones
    over it are answered 503, the others are served. How many got a 503."""
    conns, refused = [], 0
    try:
        for _ in range(CAP + 16):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for s in conns:
            s.sendall(b"GET /get?key=fz-a&stale=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for s in conns:
            raw = bytearray()
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    raw += chunk
            got = answers(bytes(raw)) if raw else []
            for answer in got:
                check(answer, seen, b"burst")
                refused += answer[0] == 503
    finally:
        for s in conns:
            s.close()
    return refused


def read_back(port: int, keys: dict[str, str], stale: bool = False) -> None:
    """Every key reads back from this node, pipelined on one connection."""
    items = list(keys.items())
    query = b"&stale=true" if stale else b""
    for i in range(0, len(items), 100):
        part = items[i:i + 100]
        data = b"".join(b"GET /get?key=%s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (k.encode(), query) for k, _ in part)
        raw, reset = send(port, data)
        assert not reset
        got = answers(raw)
        assert len(got) == len(part), (len(got), len(part))
        for (key, value), (status, _, body) in zip(part, got):
            assert status == 200 and json.loads(body)["value"] == value, (key, status, body, SEED)


def test_mutated_and_random_requests_under_writes(cluster):
    print(f"\nHTTP fuzz seed {SEED} (replay with RAFTKV_FUZZ_SEED={SEED}), {SECONDS:g}s")
    rng = random.Random(SEED)
    cluster.env.update({"RAFT_CLUSTER_KEY": KEY, "HTTP_HEAD_TIMEOUT": f"{HEAD_TIMEOUT:g}s",
                        "HTTP_MAX_CONNECTIONS": str(CAP), "LOG_LEVEL": "INFO"})
    leader = cluster.form(3, via_env_join=True)
    target, other = cluster["n2"], cluster["n3"]
    nodes = [leader, target, other]
    writer = Writer(target, "acked-by-the-writer-")
    writer.start()
    slow = SlowHeads(target.http_port)
    slow.start()
    seen: collections.Counter = collections.Counter()
    sent = answered = over_cap = 0
    checked: set[str] = set()
    try:
        wait_until(lambda: len(writer.acked) >= 10, what="writes before the fuzzing")
        rss_start = {n.id: n.status()["rss_bytes"] for n in nodes}
        t0 = time.monotonic()
        while time.monotonic() - t0 < SECONDS and sent < MAX_REQUESTS:
            for _ in range(BATCH):
                data = payload(rng)
                node = target if rng.random() < 0.8 else leader
                raw, reset = send(node.http_port, data)
                sent += 1
                try:
                    got = answers(raw, reset)
                except AssertionError as exc:
                    raise AssertionError(f"{exc} to {data[:300]!r} (seed {SEED})") from None
                answered += len(got)
                for answer in got:
                    check(answer, seen, data)
            over_cap += burst(other.http_port, seen)
            # after each batch: every node is up, what was acknowledged reads back, memory is bounded
            for node in nodes:
                assert node.running, f"{node.id} died (seed {SEED}):\n{node.log()[-3000:]}"
                rss = node.status()["rss_bytes"]
                assert rss < rss_start[node.id] + RSS_GROWTH, (node.id, rss // MIB, rss_start[node.id] // MIB, SEED)
            fresh = {k: v for k, v in list(writer.acked.items()) if k not in checked}
            read_back(target.http_port, fresh)
            checked.update(fresh)
            assert not writer.unexpected, (writer.unexpected, SEED)
            assert not slow.overdue, (slow.overdue, SEED)
        elapsed = time.monotonic() - t0
        acked = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= acked + 10, what="writes after the fuzzing")
    finally:
        slow.stop_flag.set()
        writer.stop_flag.set()
        writer.join(30)
        slow.join(30)
    print(f"HTTP fuzz: {sent} requests in {elapsed:.1f}s, {answered} answers, seed {SEED}; "
          f"status codes {dict(sorted(seen.items()))}; {over_cap} over HTTP_MAX_CONNECTIONS; "
          f"{slow.closed} slow heads closed ({slow.answered_408} answered 408); {len(writer.acked)} acknowledged writes; "
          f"RSS {[n.status()['rss_bytes'] // MIB for n in nodes]} MiB")
    assert not writer.unexpected and not slow.overdue
    assert slow.closed > 0 and slow.answered_408 > 0 and over_cap > 0
    assert seen[400] > 0 and seen[200] > 0
    cluster.wait_applied(leader.status()["commit_index"])
    for node in nodes:
        read_back(node.http_port, dict(writer.acked), stale=True)
        log = node.log()
        assert "Traceback" not in log and "internal error" not in log, (node.id, SEED, log[-3000:])
