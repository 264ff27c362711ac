"""TLS contexts of a node, built once from RAFT_TLS_CERT_FILE, _KEY_FILE, _CA_FILE.

Four contexts, one per role, because the two ports trust differently:

- the Raft port is mutual TLS (as Vault's cluster port): the server context
  demands a client certificate signed by the CA, and the client context
  presents the node's own certificate and checks the peer's against the CA;
- the HTTP port is plain HTTPS: clients (curl, the CLI, browsers) need not
  hold a certificate, so the server context does not ask for one; the client
  context (forwarding, joining, the dashboard's relays) checks the server
  against the CA.

A node's certificate therefore serves both as server and client certificate;
``scripts/tls-certs.sh`` makes such certificates. Neutral module: no import
of raftkv.node or raftkv.http, so the transport, the HTTP side and the CLI
all take their contexts from here.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

__all__ = ["TlsContexts", "build_contexts", "client_context_for_ca"]


@dataclass(frozen=True)
class TlsContexts:
    raft_server: ssl.SSLContext
    raft_client: ssl.SSLContext
    https_server: ssl.SSLContext
    https_client: ssl.SSLContext


def _load_chain(ctx: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"RAFT_TLS_CERT_FILE / RAFT_TLS_KEY_FILE: cannot load "
                         f"{cert_file} with {key_file}: {e}") from None


def _load_ca(ctx: ssl.SSLContext, ca_file: str, setting: str = "RAFT_TLS_CA_FILE") -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"{setting}: cannot load {ca_file}: {e}") from None


def _server(cert_file: str, key_file: str, ca_file: str, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert_file, key_file)
    if require_client_cert:
        _load_ca(ctx, ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context_for_ca(ca_file: str | None = None, setting: str = "RAFT_TLS_CA_FILE") -> ssl.SSLContext:
    """A client context that verifies servers against ``ca_file`` (the
    system's trust store when None). Used by the CLI's ``--cacert`` and
    :mod:`raftkv.client`; ``setting`` names the file in the error."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        _load_ca(ctx, ca_file, setting)
    return ctx


def build_contexts(cert_file: str, key_file: str, ca_file: str) -> TlsContexts:
    """All four contexts; ValueError names the setting whose file is bad."""
    raft_client = client_context_for_ca(ca_file)
    _load_chain(raft_client, cert_file, key_file)
    return TlsContexts(
        raft_server=_server(cert_file, key_file, ca_file, require_client_cert=True),
        raft_client=raft_client,
        https_server=_server(cert_file, key_file, ca_file, require_client_cert=False),
        https_client=client_context_for_ca(ca_file),
    )
