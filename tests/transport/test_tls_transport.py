"""Mutual TLS on the Raft port (transport/raftkv_protocol/tcp.py with raftkv/config/tls.py
contexts from scripts/tls-certs.sh), on both event loops."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from pathlib import Path

import pytest

from raftkv.raft.messages import RequestVote, RequestVoteResponse
from raftkv.config.tls import build_contexts, client_context_for_ca

ROOT = Path(__file__).resolve().parents[2]
KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    subprocess.run([str(ROOT / "scripts/tls-certs.sh"), str(base / "ca"), "n1", "n2"], check=True,
                   capture_output=True)
    subprocess.run([str(ROOT / "scripts/tls-certs.sh"), str(base / "other"), "n1"], check=True,
                   capture_output=True)
    return base


def contexts(certs, ca_dir, node):
    d = certs / ca_dir
    return build_contexts(str(d / f"{node}.pem"), str(d / f"{node}-key.pem"), str(d / "ca.pem"))


def tls_kwargs(ctx):
    return {"server_ssl": ctx.raft_server, "client_ssl": ctx.raft_client}


@pytest.mark.parametrize("key", [None, KEY])
async def test_nodes_with_certificates_from_the_ca_talk(transports, watch, certs, key):
    a, a_in, _ = await transports("n1", authenticate=key, **tls_kwargs(contexts(certs, "ca", "n1")))
    b, b_in, _ = await transports("n2", authenticate=key, **tls_kwargs(contexts(certs, "ca", "n2")))
    a.send("n2", b.address, RequestVoteResponse(1, True))
    b.send("n1", a.address, RequestVoteResponse(2, True))
    await watch.until(lambda: b_in.items and a_in.items)
    assert b_in.items == [("n1", RequestVoteResponse(1, True))]
    assert a_in.items == [("n2", RequestVoteResponse(2, True))]


async def test_a_certificate_from_another_ca_is_refused_and_logged(transports, watch, certs):
    a, _, a_log = await transports("n1", dial_timeout=1.0, **tls_kwargs(contexts(certs, "other", "n1")))
    b, b_in, b_log = await transports("n2", **tls_kwargs(contexts(certs, "ca", "n2")))
    a.send("n2", b.address, RequestVote(1, "n1", a.address, 0, 0))
    await watch.until(lambda: b_log.find("refused connection"))
    level, logger, _, fields = b_log.find("refused connection")[0]
    assert (level, logger) == ("ERROR", "raft.net")
    assert fields["remote-address"].startswith("127.0.0.1:")
    assert fields["error"].startswith("tls: ")
    await watch.until(lambda: a_log.find("failed to make requestVote RPC"))
    assert b_in.items == []


async def test_a_caller_without_a_certificate_is_refused_and_logged(transports, watch, certs):
    b, b_in, b_log = await transports("n2", **tls_kwargs(contexts(certs, "ca", "n2")))
    host, port = b.address.rsplit(":", 1)
    # trusts the server, but presents no certificate of its own
    ctx = client_context_for_ca(str(certs / "ca" / "ca.pem"))
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=host)
    try:
        writer.write(b"\0" * 64)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            # the server drops the connection: reading fails, or ends at EOF
            data = await reader.read(1024)
            while data:
                data = await reader.read(1024)
            raise ConnectionResetError("closed")
    finally:
        writer.transport.abort()
    await watch.until(lambda: b_log.find("refused connection"))
    assert "certificate" in b_log.find("refused connection")[0][3]["error"]
    assert b_in.items == []


async def test_a_plain_caller_is_refused_and_logged(transports, watch, certs):
    a, _, a_log = await transports("n1", dial_timeout=1.0)
    b, b_in, b_log = await transports("n2", **tls_kwargs(contexts(certs, "ca", "n2")))
    a.send("n2", b.address, RequestVote(1, "n1", a.address, 0, 0))
    await watch.until(lambda: b_log.find("refused connection"))
    assert b_log.find("refused connection")[0][3]["error"].startswith("tls: ")
    assert b_in.items == []


async def test_connections_beyond_the_limit_are_closed_before_the_tls_handshake(transports, watch, certs):
    b, b_in, b_log = await transports("n2", max_connections=1, log_interval=60.0,
                                      **tls_kwargs(contexts(certs, "ca", "n2")))
    host, port = b.address.rsplit(":", 1)
    # holds the only slot: connected, its TLS handshake not even begun
    _, held_writer = await asyncio.open_connection(host, int(port))
    try:
        await watch.until(lambda: len(b._server.handshakes) == 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            async with asyncio.timeout(5):  # closed at once, not after the handshake timeout
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read(1024) == b""
        finally:
            writer.transport.abort()
        await watch.until(lambda: b_log.find("too many connections, closing new ones"))
        [(level, _, _, fields)] = b_log.find("too many connections, closing new ones")
        assert level == "WARN" and fields["limit"] == 1 and b.refused_connections == 1
    finally:
        held_writer.transport.abort()
    assert b_in.items == []
