"""How the workload classifies answers: a timeout or a 503 saying the outcome
is unknown makes a write *unknown*, never *fail*; only answers that say
nothing happened are failures."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raftkv.chaos.history import FAIL, OK, UNKNOWN
from raftkv.chaos.workload import Workload

SCRIPT: dict[str, tuple[int, dict | None]] = {}
RELEASE = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    def _answer(self):
        status, body = SCRIPT[self.path.split("?")[0]]
        if status == 0:
            RELEASE.wait(10)   # hang until the test is over: the client times out
            return
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        return None


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    RELEASE.set()
    srv.shutdown()
    srv.server_close()
    RELEASE.clear()


@pytest.mark.parametrize("f, status, body, outcome", [
    ("set", 200, {"key": "k", "value": "v", "index": 3}, OK),
    ("remove", 200, {"key": "k", "removed": True, "index": 4}, OK),
    ("get", 200, {"key": "k", "value": "v"}, OK),
    ("get", 404, {"error": "key not found"}, OK),
    ("set", 503, {"error": "leadership lost", "outcome_unknown": True}, UNKNOWN),
    ("set", 503, {"error": "no leader", "outcome_unknown": False}, FAIL),
    ("remove", 503, {"error": "timed out", "outcome_unknown": True}, UNKNOWN),
    ("get", 503, {"error": "no leader", "outcome_unknown": False}, FAIL),
    ("set", 500, {"error": "internal error"}, UNKNOWN),
    ("set", 400, {"error": "bad", "param": "key"}, FAIL),
    ("set", 0, None, UNKNOWN),        # timeout after sending
    ("get", 0, None, FAIL),           # a read that never answered observed nothing
])
def test_outcomes(server, f, status, body, outcome):
    SCRIPT["/" + f] = (status, body)
    w = Workload(lambda: [("n1", server)], timeout=0.5)
    op = w._invoke(0, "n1", server, f, "k", "v" if f == "set" else None)
    assert op.outcome == outcome, op.describe()
    assert op.ret is not None and op.ret >= op.call
    if f == "get" and status == 200:
        assert op.value == "v"
    if f == "get" and status == 404:
        assert op.value is None
    if f == "remove" and status == 200:
        assert op.removed is True
    assert (op in w.unexpected) == (status not in (0, 200, 404, 503))


def test_refused_connection_is_a_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = Workload(lambda: [], timeout=0.5)
    op = w._invoke(0, "n1", f"127.0.0.1:{port}", "set", "k", "v")
    assert op.outcome == FAIL and op.error == "connection refused"


def test_clients_stop_within_bounds(server):
    SCRIPT["/set"] = SCRIPT["/get"] = SCRIPT["/remove"] = (200, {"value": None, "removed": False})
    w = Workload(lambda: [("n1", server)], clients=3, max_ops=25, timeout=1.0).start()
    w.stop(timeout=20)
    assert len(w.ops) <= 75 and {op.client for op in w.ops} <= {0, 1, 2}
