"""Cluster-key authentication of Raft connections (transport/raftkv_protocol/auth.py)."""

from __future__ import annotations

import asyncio

import pytest

from raftkv.raft.messages import RequestVote, RequestVoteResponse
from raftkv.transport.raftkv_protocol.auth import AuthError, ClusterKeyAuth
from raftkv.transport.codec import AuthChallenge, AuthProof, encode, hello, read_frame

KEY = "correct horse battery staple"


def test_proofs_are_bound_to_nonce_id_and_role():
    auth = ClusterKeyAuth(KEY)
    n1, n2 = auth.nonce(), auth.nonce()
    mac = auth.caller_proof(n1, "n2")
    auth.check_caller(n1, "n2", mac)
    for args in ((n2, "n2", mac), (n1, "n3", mac)):
        with pytest.raises(AuthError):
            auth.check_caller(*args)
    with pytest.raises(AuthError):       # a caller's proof is not an acceptor's
        auth.check_acceptor(n1, n1, auth.caller_proof(n1, ""))
    with pytest.raises(AuthError):
        ClusterKeyAuth("other key").check_caller(n1, "n2", mac)
    assert KEY not in repr(auth)


async def test_same_key_talks(transports, watch):
    a, a_in, _ = await transports("n1", authenticate=KEY)
    b, b_in, _ = await transports("n2", authenticate=KEY.encode())
    a.send("n2", b.address, RequestVoteResponse(1, True))
    b.send("n1", a.address, RequestVoteResponse(2, True))
    await watch.until(lambda: b_in.items and a_in.items)
    assert b_in.items == [("n1", RequestVoteResponse(1, True))]


@pytest.mark.parametrize("caller_key", [None, "a different key"])
async def test_caller_without_the_key_is_refused_and_logged(transports, watch, caller_key):
    a, _, a_log = await transports("n1", authenticate=caller_key, dial_timeout=1.0)
    b, b_in, b_log = await transports("n2", authenticate=KEY)
    # the caller reports the refusal as the RPC that failed (a vote request)
    for i in range(3):
        a.send("n2", b.address, RequestVote(i + 1, "n1", a.address, 0, 0))
    await watch.until(lambda: b_log.find("refused connection"))
    level, logger, _, fields = b_log.find("refused connection")[0]
    assert (level, logger) == ("ERROR", "raft.net") and "n1" in fields["error"]
    if caller_key is not None:
        await watch.until(lambda: a_log.find("failed to make requestVote RPC"))
        assert "cluster key" in a_log.find("failed to make requestVote RPC")[0][3]["error"]
    assert b_in.items == []


async def test_acceptor_without_the_key_is_not_trusted(transports, watch):
    a, _, a_log = await transports("n1", authenticate=KEY, dial_timeout=0.5)
    b, b_in, _ = await transports("n2")
    a.send("n2", b.address, RequestVote(1, "n1", a.address, 0, 0))
    await watch.until(lambda: a_log.find("failed to make requestVote RPC"))
    assert "cluster key" in a_log.find("failed to make requestVote RPC")[0][3]["error"]
    assert b_in.items == []


async def test_a_forged_proof_is_refused(transports, watch):
    b, b_in, b_log = await transports("n2", authenticate=KEY)
    host, port = b.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(encode(hello("n1", "127.0.0.1:1")))
        challenge = await read_frame(reader)
        assert type(challenge) is AuthChallenge and len(challenge.nonce) == 32
        writer.write(encode(AuthProof(b"\0" * 32, b"\1" * 32)) + encode(RequestVoteResponse(1, True)))
        await writer.drain()
        assert await read_frame(reader) is None     # closed without an answer
    finally:
        writer.close()
    await watch.until(lambda: b_log.find("refused connection"))
    assert b_in.items == []


def test_other_authenticators_are_refused():
    from raftkv.transport.options import TransportOptions
    from raftkv.transport.raftkv_protocol.tcp import TcpTransport
    with pytest.raises(NotImplementedError):
        TcpTransport("n1", "127.0.0.1", 0, lambda f, m: None, TransportOptions(authenticate=42))
