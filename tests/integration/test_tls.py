"""TLS on every port (RAFT_TLS_*), with certificates from scripts/tls-certs.sh:
a 3-node cluster joins, writes and reads over HTTPS (a follower forwards to
the leader over HTTPS), the CLI talks to it with --cacert, a Raft caller
without a certificate from the CA is refused and logged while the cluster
keeps working, and plain HTTP to the HTTPS port fails cleanly."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster import REPO, Cluster, Node, wait_until

pytestmark = pytest.mark.timeout(120)

KEY = "tls test cluster key 0123456789"


class TlsNode(Node):
    """A node whose HTTP API is HTTPS, verified against the test CA."""

    scheme = "https"
    ssl_context: ssl.SSLContext


class TlsCluster(Cluster):
    def __init__(self, root: Path, certs: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(root, env)
        self.certs = certs
        self.ssl_context = ssl.create_default_context(cafile=str(certs / "ca.pem"))

    def add(self, node_id: str, bootstrap: bool = False, join: str | None = None,
            env: dict[str, str] | None = None, start: bool = True) -> Node:
        tls = {"RAFT_TLS_CERT_FILE": str(self.certs / f"{node_id}.pem"),
               "RAFT_TLS_KEY_FILE": str(self.certs / f"{node_id}-key.pem"),
               "RAFT_TLS_CA_FILE": str(self.certs / "ca.pem")}
        node = TlsNode(node_id, self.root, {**self.env, **tls, **(env or {})}, bootstrap=bootstrap, join=join)
        node.ssl_context = self.ssl_context
        self.nodes[node_id] = node
        if start:
            node.start()
        return node


def make_certs(directory: Path, *nodes: str) -> Path:
    out = subprocess.run([str(REPO / "scripts/tls-certs.sh"), str(directory), *nodes],
                         check=True, capture_output=True, text=True).stdout
    assert f"CA:   {directory}/ca.pem" in out
    return directory


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls-cluster")
    certs = make_certs(root / "certs", "n1", "n2", "n3")
    cluster = TlsCluster(root, certs, {"RAFT_CLUSTER_KEY": KEY})
    try:
        cluster.form(3, via_env_join=True)
        yield cluster
    finally:
        cluster.close()


def follower_of(cluster: Cluster) -> Node:
    leader = cluster.leader()
    return next(n for n in cluster.running() if n is not leader)


def test_three_nodes_join_write_and_read_over_https(tls_cluster):
    leader = tls_cluster.leader()
    assert "scheme=https" in leader.log()
    follower = follower_of(tls_cluster)
    # a write on a follower is forwarded to the leader over HTTPS
    resp = follower.get("/set", key="colour", value="teal")
    assert resp.status == 200, resp
    assert leader.value("colour") == "teal"
    # a linearizable read on a follower asks the leader over TLS for its index; stale reads are local
    assert follower.value("colour") == "teal"
    wait_until(lambda: all(n.value("colour", stale=True) == "teal" for n in tls_cluster.running()),
               what="every node to apply the write")
    assert follower.get("/status").json()["leader"]["id"] == leader.id


def test_fast_path_hands_other_routes_to_aiohttp_over_tls(tls_cluster):
    node = follower_of(tls_cluster)
    host, port = node.http_addr.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=tls_cluster.ssl_context, timeout=10)
    try:
        # one kept-alive TLS connection: fast route, aiohttp route, fast route again
        conn.request("GET", "/set?key=ka&value=1")
        r = conn.getresponse(); assert r.status == 200, r.read(); r.read()
        conn.request("GET", "/peers")
        r = conn.getresponse(); assert r.status == 200; assert json.loads(r.read())
        conn.request("PUT", "/key/ka2", body=b"2")
        r = conn.getresponse(); r.read(); assert r.status in (200, 204, 404, 405)
        conn.request("GET", "/get?key=ka")
        r = conn.getresponse(); body = json.loads(r.read())
        assert r.status == 200 and body["value"] == "1", body
    finally:
        conn.close()


def test_cli_with_cacert(tls_cluster):
    leader = tls_cluster.leader()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ca = str(tls_cluster.certs / "ca.pem")
    base = [sys.executable, "-m", "raftkv", "--cacert", ca, "--addr", f"https://{leader.http_addr}"]
    done = subprocess.run(base + ["set", "cli-key", "cli-value"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(base + ["get", "cli-key"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "cli-value" in done.stdout, (done.stdout, done.stderr)
    # the environment variable works the same, and a scheme-less address means https with it
    env2 = {**env, "RAFTKV_CACERT": ca}
    done = subprocess.run([sys.executable, "-m", "raftkv", "--addr", leader.http_addr, "get", "cli-key"],
                          env=env2, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "cli-value" in done.stdout, (done.stdout, done.stderr)
    # without the CA the certificate is not trusted: a clear error, not a traceback
    done = subprocess.run([sys.executable, "-m", "raftkv", "--addr", f"https://{leader.http_addr}",
                           "get", "cli-key"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "certificate" in done.stderr.lower(), done.stderr


def _raft_dial(node: Node, ctx: ssl.SSLContext) -> None:
    """Dial the Raft port with ``ctx``; the node refusing it (a TLS alert or
    a reset) is the expected outcome, which the caller checks in the log."""
    host, port = node.raft_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with contextlib.suppress(ssl.SSLError, OSError):
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"\x00" * 32)
                tls.recv(1024)   # the server aborts once it checks our certificate


def test_raft_callers_without_a_certificate_from_the_ca_are_refused(tls_cluster, tmp_path):
    leader = tls_cluster.leader()
    # no client certificate at all
    _raft_dial(leader, tls_cluster.ssl_context)
    # a certificate from another CA (that trusts ours, so the handshake gets that far)
    other = make_certs(tmp_path / "other", "n9")
    ctx = ssl.create_default_context(cafile=str(tls_cluster.certs / "ca.pem"))
    ctx.load_cert_chain(str(other / "n9.pem"), str(other / "n9-key.pem"))
    _raft_dial(leader, ctx)
    # plain TCP
    with socket.create_connection(tuple(leader.raft_addr.rsplit(":", 1)), timeout=5) as raw:
        raw.sendall(b"not tls at all\r\n" * 8)
        with contextlib.suppress(OSError):  # a reset is a refusal too; the log is checked below
            raw.recv(1024)

    def refusals():
        return [line for line in leader.log().splitlines() if "refused connection" in line]
    wait_until(lambda: len(refusals()) >= 3, what="three refusals in the log")
    lines = refusals()
    assert all("[ERROR] raft.net: refused connection" in line and "remote-address=127.0.0.1:" in line
               and "error=" in line and "tls:" in line for line in lines), lines
    assert any("certificate" in line.lower() for line in lines), lines
    # and the cluster keeps working
    assert leader.set("after-refusals", "still-here")
    assert follower_of(tls_cluster).value("after-refusals") == "still-here"


def test_plain_http_to_the_https_port_fails_cleanly(tls_cluster):
    node = tls_cluster.leader()
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://{node.http_addr}/status", timeout=5).read()
    # the node is unharmed and says nothing alarming about it
    assert node.get("/status").status == 200
    assert "Traceback" not in node.log()


@pytest.mark.parametrize("http_client", ["raw", "aiohttp"])
def test_bench_with_cacert(tls_cluster, http_client):
    leader = tls_cluster.leader()
    follower = follower_of(tls_cluster)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "raftkv", "bench", "--cacert", str(tls_cluster.certs / "ca.pem"),
         "--addr", f"{leader.http_addr},{follower.http_addr}", "-n", "60", "-c", "4", "-k", "8", "--prefill",
         "--mix", "set=1,get=1", "--http", http_client, "--json", "-q"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ops"] == 60 and not result["errors"], result["error_kinds"]
