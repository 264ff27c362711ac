"""What a new user meets first, without a cluster: one line naming the
problem instead of a traceback or a cryptic message (a TLS port spoken to
in plain HTTP, nothing listening, a reader that went away), `raftkv set`'s
ways to give a value, and tables that fit 100 columns."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from raftkv.cli.cluster import _peers_table, watch_frame

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: bytes | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "raftkv", *args], capture_output=True, timeout=timeout,
                          env=env, input=stdin if stdin is not None else b"", check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- tables ------------------------------------------------------------------------


def _row(node: str, state: str, voter: bool = True, healthy: bool = True, contact: int = 3,
         index: int | None = 1_234_567, lag: int = 0) -> dict:
    n = node[1:]
    return {"node": node, "address": f"10.0.12.10{n}:9000", "http": f"10.0.12.10{n}:8000", "state": state,
            "voter": voter, "commit_index": index, "applied_index": index, "term": None if index is None else 12,
            "last_contact": contact, "healthy": healthy, "last_index": index, "lag_entries": lag}


# five servers as a leader sees them a while into their life: one killed 12 s
# ago, one nonvoter still catching up
FIVE = {"leader_commit": 1_234_567, "leader_term": 12, "servers": [
    _row("n1", "leader", contact=0), _row("n2", "follower", contact=41), _row("n3", "follower", contact=12),
    _row("n4", "unreachable", healthy=False, contact=12_345, index=None, lag=5321),
    _row("n5", "follower", voter=False, healthy=False, contact=7, index=1_182_256, lag=52_311)]}


def test_peers_and_watch_fit_100_columns_unless_wide():
    for text in (_peers_table(FIVE), watch_frame("http://10.0.12.101:8000", FIVE, "12:03:04")):
        assert max(len(line) for line in text.splitlines()) <= 100, text
    table = _peers_table(FIVE)
    assert table.splitlines()[0].split()[:4] == ["Node", "Address", "State", "Voter"]
    wide = _peers_table(FIVE, wide=True)
    for column in ("Term", "Commit Index", "Applied Index", "HTTP"):
        assert column not in table.splitlines()[0] and column in wide.splitlines()[0]
    assert "10.0.12.105:8000" in wide


def test_each_column_means_one_thing():
    headers = [h.strip() for h in _peers_table(FIVE, wide=True).splitlines()[0].split("  ") if h.strip()]
    assert len(headers) == len(set(headers))
    # one lag (the leader's view), one term (the server's own)
    assert "Trails Leader By" not in headers and "Last Term" not in headers


def test_the_lag_of_a_server_that_does_not_answer_says_so():
    rows = {line.split()[0]: line for line in _peers_table(FIVE).splitlines()[2:]}
    assert rows["n4"].endswith("? (down 12s)") and "5321" not in rows["n4"]
    assert "12.345s" in rows["n4"]  # Last Contact: the leader's own view
    assert rows["n5"].split()[-1] == "52311" and rows["n2"].split()[-1] == "0"


# --- a TLS port, nothing listening, a closed pipe ---------------------------------------


class AlertServer(threading.Thread):
    """A port that answers whatever it is sent with a TLS alert record and
    closes, as some TLS servers do with a plain HTTP request."""

    ALERT = b"\x15\x03\x01\x00\x02\x02\x28"  # fatal handshake_failure

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            # a client that hangs up first is fine: the alert is all it could get
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                conn.recv(4096)
                conn.sendall(self.ALERT)

    def close(self) -> None:
        self.stopping.set()
        self.join(5)
        self.sock.close()


def test_a_port_that_answers_with_a_tls_alert_is_named_as_a_tls_port():
    server = AlertServer()
    server.start()
    try:
        addr = f"127.0.0.1:{server.port}"
        for args in (("status",), ("get", "k"), ("peers",), ("set", "k", "v")):
            r = cli("--addr", addr, *args)
            assert r.returncode == 2, (args, r)
            assert r.stderr.decode() == (f"raftkv: {addr} looks like a TLS (HTTPS) port: "
                                         "pass --cacert FILE (or set RAFTKV_CACERT)\n"), (args, r)
    finally:
        server.close()


def test_nothing_listening_is_one_line():
    addr = f"127.0.0.1:{free_port()}"
    r = cli("--addr", addr, "status")
    assert r.returncode == 2
    assert r.stderr.decode() == f"raftkv: cannot reach {addr}: connection refused (is a node running there?)\n"


@pytest.mark.parametrize("addr, problem", [
    ("localhost:abc", "Port could not be cast to integer value as 'abc'"),
    ("localhost:99999", "Port out of range 0-65535"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("ftp://localhost:8000", "the scheme must be http or https, not ftp"),
])
def test_an_address_that_cannot_be_one_is_refused_before_any_request(addr, problem):
    r = cli("--addr", addr, "status")
    assert r.returncode == 2
    assert r.stderr.decode() == f"raftkv: --addr {addr}: {problem} (expected host:port or http(s)://host:port)\n"


def test_wait_gives_up_at_its_timeout_with_one_line():
    addr = f"127.0.0.1:{free_port()}"
    r = cli("wait", "--addr", addr, "--leader", "--timeout", "0.5")
    assert r.returncode == 1
    assert r.stderr.decode() == (f"raftkv wait: timed out after 0.5s waiting for {addr} to know a leader: "
                                 f"cannot reach {addr}: connection refused (is a node running there?)\n")


def test_a_reader_that_goes_away_ends_the_command_quietly():
    # one print of ~200 KB: more than a pipe holds, so the write meets the closed pipe
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "raftkv", "sim", "--scenario", "snapshot-install",
                             "--json-trace", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.read(10).startswith(b"{")
        proc.stdout.close()  # `| head -c 10`
        assert proc.wait(60) == 141
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


# --- raftkv set's value ----------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (("set", "k"), "set needs a VALUE, or - (stdin), or --value-file FILE"),
    (("set", "k", "v", "--value-file", "/dev/null"), "set needs a VALUE, or - (stdin), or --value-file FILE"),
    (("set", "k", "--value-file", "/nonexistent/value"), "raftkv set: cannot read the value: "),
])
def test_set_says_how_to_give_a_value(args, message):
    r = cli(*args)
    assert r.returncode == 2 and message in r.stderr.decode(), r
    assert b"Traceback" not in r.stderr


def test_set_refuses_a_value_that_is_not_text(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"ok\xff\xfe")
    r = cli("set", "k", "--value-file", str(blob), "--addr", f"127.0.0.1:{free_port()}")
    assert r.returncode == 2
    assert r.stderr.decode() == f"raftkv set: {blob} is not UTF-8 text (byte 2): raftkv stores text values\n"
    r = cli("set", "k", "-", "--addr", f"127.0.0.1:{free_port()}", stdin=b"\xff")
    assert r.stderr.decode() == "raftkv set: stdin is not UTF-8 text (byte 0): raftkv stores text values\n"
