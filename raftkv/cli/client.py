"""The CLI's HTTP client: one request to a node with the standard library
alone (so a command starts fast), the cluster key as a bearer token, the CA
of ``--cacert``, and one line saying why a request failed: the API's own
error, or no answer at all (a TLS port spoken to in plain HTTP, a certificate
not trusted, nothing listening).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

# What a request to a node fails with when it gets no HTTP answer: refused,
# reset, timed out, or bytes that are not HTTP (a TLS alert read as a status
# line is an http.client.HTTPException, not an OSError).
CLIENT_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


# The CA of --cacert / RAFTKV_CACERT as a client SSL context, set once by
# main(): one CLI invocation talks to one cluster, so every request of it
# (including to the other members `peers` and `watch` visit) trusts the same CA.
_tls_context = None


def _base_url(addr: str) -> str:
    """A node's base URL: as given, or host:port with https when a CA was
    given (a TLS cluster), else http."""
    if "://" in addr:
        return addr.rstrip("/")
    return ("https://" if _tls_context is not None else "http://") + addr.rstrip("/")


def _urlopen(req: urllib.request.Request, timeout: float):
    return urllib.request.urlopen(req, timeout=timeout, context=_tls_context)


def _auth_headers() -> dict[str, str]:
    """The cluster key as a bearer token, when RAFT_CLUSTER_KEY is set: the
    admin routes (join, remove-peer, snapshot, restore, ...) require it."""
    key = os.environ.get("RAFT_CLUSTER_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _request(addr: str, method: str, path: str, params: dict | None = None,
             timeout: float = 30.0, body: bytes | None = None,
             content_type: str | None = None) -> tuple[int, object]:
    url = _base_url(addr) + path
    if params:
        url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    headers = _auth_headers()
    if content_type:
        headers["Content-Type"] = content_type
    if body is None and method == "POST":
        body = b""
    req = urllib.request.Request(url, method=method, data=body, headers=headers)
    try:
        with _urlopen(req, timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, _decode(raw)


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _client(args: argparse.Namespace, method: str, path: str, params: dict | None = None,
            show=None, body: bytes | None = None, content_type: str | None = None) -> int:
    """One request; on success print ``show(body)`` (default: the JSON answer)."""
    try:
        status, answer = _request(args.addr, method, path, params, body=body, content_type=content_type)
    except CLIENT_ERRORS as exc:
        return _unreachable(args.addr, exc)
    if 200 <= status < 300:
        print((show or _json_line)(answer))
        return 0
    print(f"raftkv: {_error_line(status, answer)}", file=sys.stderr)
    return 1


def _json_line(body: object) -> str:
    """Every command's JSON on one line, as the HTTP API sends it (what curl
    prints), so the README's examples and ``| jq`` hold for all of them."""
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)


def _error_line(status: int, body: object) -> str:
    """One line for a failed request: the API's own error message, not the JSON."""
    if isinstance(body, dict) and body.get("error"):
        text = str(body["error"])
        if body.get("key") is not None and text == "key not found":
            text = f"key not found: {body['key']}"
        if body.get("outcome_unknown"):
            text += " (the write may still take effect)"
        leader = body.get("leader")
        if status == 503 and isinstance(leader, dict) and leader.get("id"):
            text += f" (leader: {leader['id']})"
    else:
        text = (body if isinstance(body, str) else json.dumps(body)) or "no answer"
        text = " ".join(str(text).split())[:200]
    return f"HTTP {status}: {text}"


def _unreachable(addr: str, exc: BaseException) -> int:
    print(f"raftkv: {unreachable_line(addr, exc)}", file=sys.stderr)
    return 2


CACERT_HINT = "pass --cacert FILE (or set RAFTKV_CACERT)"


def unreachable_line(addr: str, exc: BaseException) -> str:
    """Why a request to ``addr`` got no HTTP answer, in one line. The
    failures a new user meets first get named: speaking plain HTTP to a TLS
    port (the node closes the connection, or answers with a TLS alert, which
    would otherwise read as "Remote end closed connection without
    response"), a certificate not signed by a CA we were given, and nothing
    listening."""
    reason = getattr(exc, "reason", exc)
    url = urllib.parse.urlsplit(_base_url(addr))
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"{addr}: its TLS certificate is not trusted ({reason.verify_message}): {CACERT_HINT}"
    if (url.scheme == "http" and isinstance(reason, (ConnectionError, http.client.HTTPException))
            and not isinstance(reason, ConnectionRefusedError) and _speaks_tls(host, port)):
        return f"{addr} looks like a TLS (HTTPS) port: {CACERT_HINT}"
    if url.scheme == "https" and isinstance(reason, ssl.SSLError) and not _speaks_tls(host, port):
        return (f"{addr} does not speak TLS: use http://{url.netloc} "
                "(and no --cacert or RAFTKV_CACERT)")
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot reach {addr}: connection refused (is a node running there?)"
    if isinstance(reason, socket.gaierror):
        return f"cannot reach {addr}: unknown host {host} ({reason.strerror})"
    return f"cannot reach {addr}: {reason}"


def addr_problem(addr: str) -> str | None:
    """What is wrong with an --addr, before any request is made of it."""
    try:
        url = urllib.parse.urlsplit(_base_url(addr))
        url.port  # noqa: B018 -- parsing the port is the check
    except ValueError as exc:
        return str(exc)
    if url.scheme not in ("http", "https"):
        return f"the scheme must be http or https, not {url.scheme}"
    if not url.hostname:
        return "no host"
    return None


def _speaks_tls(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TLS handshake with ``host:port`` gets anywhere: completed,
    or refused with a TLS alert (a server that wants a client certificate).
    Nothing is verified: this only names the failure of a request that was
    already made."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host):
            return True
    except ssl.SSLError as exc:
        return "ALERT" in (exc.reason or "")
    except OSError:
        return False


def _use_cacert(cafile: str | None) -> None:
    """The client SSL context of every request (urllib here, bench's own)."""
    global _tls_context
    if cafile:
        from ..config.tls import client_context_for_ca
        _tls_context = client_context_for_ca(cafile)
