"""Admission of a raftkv connection: the Hello and the cluster key challenge.

Theory of operation
-------------------
A connection of raftkv's own protocol has a direction: the caller dials to
send its own messages and the acceptor never writes Raft traffic back. Its
first frame is a ``Hello`` naming the caller (magic, protocol version, node
id, address), and the acceptor attributes every later frame to that id.
:func:`handshake_out` (the caller's side) and :func:`handshake_in` (the
acceptor's) are the only places a connection is admitted.

With a cluster key (a :class:`~.auth.ClusterKeyAuth`) both ends run the HMAC
challenge of :mod:`.auth` right after the Hello: the acceptor sends a
challenge, the caller answers with its proof and a challenge of its own, the
acceptor proves itself in turn. That is the only time an acceptor writes on an
accepted connection before any Raft traffic. A caller that fails it raises
:class:`~.auth.AuthError` on the accepting side (logged as ``refused
connection`` and closed); a caller that cannot authenticate the acceptor fails
its dial like any other dial error. Every read has a deadline, and the frames
read here may not exceed 64 KiB, whatever the frame limit: anyone who reaches
the port may send them.
"""

from __future__ import annotations

import asyncio

from ..codec import MAGIC, VERSION, AuthChallenge, AuthProof, CodecError, Hello, encode, hello, read_frame
from .auth import NONCE_SIZE, AuthError, ClusterKeyAuth

__all__ = ["HELLO_MAX_FRAME", "handshake_in", "handshake_out"]

HELLO_MAX_FRAME = 64 * 1024      # a Hello is tiny; refuse to buffer more for one


async def handshake_out(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node_id: str, address: str,
                        auth: ClusterKeyAuth | None, timeout: float) -> None:
    """The caller's side of admission: the Hello, then with a cluster key
    the challenge answered within ``timeout``, before any RPC is sent."""
    writer.write(encode(hello(node_id, address)))
    if auth is None:
        return
    try:
        async with asyncio.timeout(timeout):
            challenge = await read_frame(reader, HELLO_MAX_FRAME)
            if type(challenge) is not AuthChallenge or len(challenge.nonce) != NONCE_SIZE:
                got = "EOF" if challenge is None else type(challenge).__name__
                raise AuthError(f"expected a cluster key challenge, got {got} "
                                "(does the peer run with the same RAFT_CLUSTER_KEY?)")
            mine = auth.nonce()
            writer.write(encode(AuthProof(auth.caller_proof(challenge.nonce, node_id), mine)))
            answer = await read_frame(reader, HELLO_MAX_FRAME)
            if type(answer) is not AuthProof:
                got = "EOF" if answer is None else type(answer).__name__
                raise AuthError(f"the peer refused our cluster key proof ({got})")
            auth.check_acceptor(mine, challenge.nonce, answer.mac)
    except TimeoutError:
        raise AuthError("i/o timeout waiting for the cluster key challenge "
                        "(does the peer run with RAFT_CLUSTER_KEY?)") from None
    except CodecError as e:
        raise AuthError(f"cluster key handshake failed: {e}") from None


async def handshake_in(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       auth: ClusterKeyAuth | None, timeout: float) -> Hello | None:
    """Admit a connection: its first frame must be a valid Hello, within
    ``timeout``. Returns None if the caller hung up without a word. With a
    cluster key the challenge is sent and checked here, before the Hello is
    trusted. Raises CodecError or AuthError to refuse the caller."""
    try:
        async with asyncio.timeout(timeout):
            msg = await read_frame(reader, HELLO_MAX_FRAME)
    except TimeoutError:
        raise CodecError("i/o timeout waiting for Hello") from None
    if msg is None:
        return None
    if type(msg) is not Hello:
        raise CodecError(f"expected Hello as the first frame, got {type(msg).__name__}")
    if msg.magic != MAGIC:
        raise CodecError(f"bad magic {msg.magic!r} in Hello")
    if msg.version != VERSION:
        raise CodecError(f"unsupported protocol version {msg.version} (want {VERSION})")
    if auth is not None:
        nonce = auth.nonce()
        writer.write(encode(AuthChallenge(nonce)))
        try:
            async with asyncio.timeout(timeout):
                proof = await read_frame(reader, HELLO_MAX_FRAME)
        except TimeoutError:
            raise AuthError(f"{msg.node_id}: i/o timeout waiting for the cluster key proof") from None
        except CodecError as e:
            raise AuthError(f"{msg.node_id}: no valid cluster key proof ({e})") from None
        if type(proof) is not AuthProof or len(proof.nonce) != NONCE_SIZE:
            got = "EOF" if proof is None else type(proof).__name__
            raise AuthError(f"{msg.node_id}: expected a cluster key proof, got {got} "
                            "(the caller has no RAFT_CLUSTER_KEY?)")
        try:
            auth.check_caller(nonce, msg.node_id, proof.mac)
        except AuthError as e:
            raise AuthError(f"{msg.node_id}: {e}") from None
        writer.write(encode(AuthProof(auth.acceptor_proof(proof.nonce, nonce), b"")))
    return msg
