"""Cluster-key authentication of Raft connections (``RAFT_CLUSTER_KEY``).

Theory of operation
-------------------
Every node of a cluster holds the same secret key. A connection is admitted
only after both ends proved they hold it, without ever sending it:

1. caller -> acceptor: ``Hello`` (as without a key);
2. acceptor -> caller: ``AuthChallenge(nonce_a)``, 32 random bytes;
3. caller -> acceptor: ``AuthProof(mac_c, nonce_c)`` where
   ``mac_c = HMAC-SHA256(key, "raftkv-auth-v1 caller" | nonce_a | node_id)``
   binds the proof to the acceptor's fresh nonce and the caller's claimed id;
4. acceptor -> caller: ``AuthProof(mac_a, b"")`` with
   ``mac_a = HMAC-SHA256(key, "raftkv-auth-v1 acceptor" | nonce_c | nonce_a)``.

The acceptor checks step 3 before it hands anything to Raft, the caller
checks step 4 before it sends anything; a mismatch closes the connection and
is logged on both sides (``refused connection``). Nonces are fresh per
connection, so a recorded handshake cannot be replayed, and the two MACs use
different labels, so one side's proof is never valid as the other's. Like
Vault's bootstrap challenge, this authenticates peers; it does not encrypt
the traffic (run it on a trusted network or under TLS/WireGuard).
"""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["AuthError", "ClusterKeyAuth", "NONCE_SIZE"]

NONCE_SIZE = 32
_LABEL_CALLER = b"raftkv-auth-v1 caller\x00"
_LABEL_ACCEPTOR = b"raftkv-auth-v1 acceptor\x00"


class AuthError(Exception):
    """The other side did not prove it holds the cluster key."""


class ClusterKeyAuth:
    def __init__(self, key: bytes | str) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not key:
            raise ValueError("cluster key must not be empty")
        self._key = key

    def __repr__(self) -> str:
        return "ClusterKeyAuth(<redacted>)"

    @staticmethod
    def nonce() -> bytes:
        return os.urandom(NONCE_SIZE)

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._key, b"".join(parts), hashlib.sha256).digest()

    def caller_proof(self, acceptor_nonce: bytes, node_id: str) -> bytes:
        return self._mac(_LABEL_CALLER, acceptor_nonce, node_id.encode("utf-8"))

    def acceptor_proof(self, caller_nonce: bytes, acceptor_nonce: bytes) -> bytes:
        return self._mac(_LABEL_ACCEPTOR, caller_nonce, acceptor_nonce)

    def check_caller(self, acceptor_nonce: bytes, node_id: str, mac: bytes) -> None:
        if not hmac.compare_digest(mac, self.caller_proof(acceptor_nonce, node_id)):
            raise AuthError("cluster key mismatch: the caller's proof is wrong")

    def check_acceptor(self, caller_nonce: bytes, acceptor_nonce: bytes, mac: bytes) -> None:
        if not hmac.compare_digest(mac, self.acceptor_proof(caller_nonce, acceptor_nonce)):
            raise AuthError("cluster key mismatch: the acceptor's proof is wrong")

    def bearer(self) -> str:
        return "Bearer " + self._key.decode("utf-8", "surrogateescape")
