"""The ``raftkv`` command: run a node, or talk to one over HTTP.

Theory of operation: ``raftkv serve`` turns flags + environment into
:class:`~raftkv.config.settings.NodeSettings` (a bad value exits with status 2 and a
message naming the variable) and runs :func:`raftkv.main.run_node` until
SIGTERM/SIGINT (exit 0). It exits 73 when the volume cannot be used, so
the node never started (read-only, not writable, less free space than
``RAFT_MIN_FREE_BYTES``, corrupt), 74 when the volume failed or went away
while the node ran, 1 for anything else (:mod:`raftkv.main`). The client
subcommands (``status``, ``peers``, ``get``,
``set``, ``remove``, ``join``, ``remove-peer``, ``transfer-leadership``,
``watch``, ``snapshot``, ``wait``) are thin wrappers over the HTTP API (README,
"HTTP API") using only the standard library, so they start fast; they print
the JSON answer on one line, as the API sends it (``get``: the value alone
unless ``--json``; ``peers`` and ``watch``: a table like ``vault operator raft
list-peers``, 100 columns at most unless ``--wide``) and exit 0 on a 2xx
status, else print one line naming the error to stderr and exit 1 (2 if the
node cannot be reached; the line then says why when it can tell: a TLS port
spoken to without ``--cacert``, a certificate not trusted, nothing
listening). ``raftkv wait`` polls until a node answers, knows a leader, or
its leader has N voters. ``--addr`` goes before or after the subcommand.
``sim`` hands over to ``raftkv.sim.cli`` when that package provides it, and
so does ``replay`` (``raftkv replay FILE...``: step traces a node recorded
with ``RAFT_TRACE`` fed through a fresh core). Output cut short by a closed
pipe (``raftkv watch | head``) or Ctrl-C ends the command quietly.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from ..config.settings import EXIT_USAGE, ConfigError, add_serve_arguments, load_settings
from ..config.textforms import go_duration

DEFAULT_ADDR = "http://127.0.0.1:8000"
# What a request to a node fails with when it gets no HTTP answer: refused,
# reset, timed out, or bytes that are not HTTP (a TLS alert read as a status
# line is an http.client.HTTPException, not an OSError).
CLIENT_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)
# The shell's status for a command killed by SIGPIPE: `raftkv watch | head`
# ends as `yes | head` does.
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130
# Tables fit this many columns unless --wide.
TABLE_WIDTH = 100

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


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def cluster_view(addr: str, timeout: float = 3.0) -> dict:
    """The member list (from the leader, via ``addr``) joined with each
    member's own ``/status``; raises one of CLIENT_ERRORS if ``addr`` is
    down. Members whose ``/status`` does not answer are ``unreachable``
    (``unknown`` when no member knows their HTTP address yet)."""
    from concurrent.futures import ThreadPoolExecutor
    status, peers = _request(addr, "GET", "/peers", timeout=timeout)
    if status != 200 or not isinstance(peers, list):
        raise _ClientError(status, peers)

    def fetch(peer: dict) -> dict | None:
        if not peer.get("http"):
            return None
        try:
            code, st = _request(peer["http"], "GET", "/status", timeout=timeout)
        except CLIENT_ERRORS:
            return None
        return st if code == 200 and isinstance(st, dict) else None
    with ThreadPoolExecutor(max(1, len(peers))) as pool:
        statuses = list(pool.map(fetch, peers))
    leader_commit = leader_term = None
    for st in statuses:
        if st and st.get("state") == "Leader":
            leader_commit, leader_term = st.get("commit_index"), st.get("term")
    rows = []
    for peer, st in zip(peers, statuses):
        rows.append({
            "node": peer["id"], "address": peer.get("address", ""), "http": peer.get("http"),
            "state": (st.get("state", "?").lower() if st else "unreachable" if peer.get("http") else "unknown"),
            "voter": peer.get("suffrage") == "Voter",
            "commit_index": st.get("commit_index") if st else None,
            "applied_index": st.get("applied_index") if st else None,
            "term": st.get("term") if st else None,
            "last_contact": peer.get("last_contact"),
            "healthy": peer.get("healthy"),
            "last_index": st.get("last_log_index") if st else None,
            "lag_entries": peer.get("lag_entries"),
        })
    return {"leader_commit": leader_commit, "leader_term": leader_term, "servers": rows}


class _ClientError(Exception):
    def __init__(self, status: int, body: object) -> None:
        super().__init__(_error_line(status, body))
        self.status = status
        self.body = body


PEERS_LEGEND = """\
columns:
  State         the server's own word (unreachable: its /status did not answer)
  Healthy       the leader's view: heard from lately, and not too far behind
  Last Contact  how long ago the leader last heard from it
  Last Index    the last entry of its own log
  Lag           entries of the leader's log it still lacks, as the leader knows;
                "? (down 12s)" when the server does not answer and the leader
                last heard from it 12s ago
  --wide adds Term (its current term), Commit Index and Applied Index (its
  own), and HTTP (its HTTP address)
"""


def _ms(ms: object) -> str:
    return "" if ms is None else go_duration(int(ms) * 1_000_000)


def _lag_cell(row: dict) -> str:
    """Entries behind the leader; for a server that does not answer, what
    the leader last knew is no longer a lag but a guess, so say how long it
    has been silent instead."""
    lag, lc = row.get("lag_entries"), row.get("last_contact")
    if row["state"] != "unreachable":
        return _cell(lag)
    if lc is None:
        return "?"
    return f"? (down {go_duration(int(lc) // 1000 * 1_000_000_000)})"


def _peers_table(view: dict, wide: bool = False) -> str:
    """The columns of ``vault operator raft autopilot state`` that apply,
    each meaning one thing (PEERS_LEGEND); 100 columns wide for a 5-node
    cluster unless ``wide``."""
    headers = ["Node", "Address", "State", "Voter", "Healthy", "Last Contact", "Last Index", "Lag"]
    if wide:
        headers += ["Term", "Commit Index", "Applied Index", "HTTP"]
    rows = []
    for r in view["servers"]:
        row = [r["node"], r["address"], r["state"], _cell(r["voter"]), _cell(r.get("healthy")),
               _ms(r.get("last_contact")), _cell(r.get("last_index")), _lag_cell(r)]
        if wide:
            row += [_cell(r["term"]), _cell(r["commit_index"]), _cell(r["applied_index"]), _cell(r.get("http"))]
        rows.append(row)
    return _table(headers, rows)


def _print_peers(args: argparse.Namespace) -> int:
    if args.json:
        return _print_peers_json(args)
    try:
        view = cluster_view(args.addr)
    except _ClientError as exc:
        print(f"raftkv: {exc}", file=sys.stderr)
        return 1
    except CLIENT_ERRORS as exc:
        return _unreachable(args.addr, exc)
    print(_peers_table(view, wide=args.wide))
    return 0


def watch_frame(addr: str, view: dict, stamp: str, wide: bool = False) -> str:
    leader = next((r for r in view["servers"] if r["state"] == "leader"), None)
    head = (f"raftkv watch  {addr}  {stamp}  leader: {leader['node'] if leader else 'none'}"
            f"{'  term: ' + _cell(view.get('leader_term')) if leader else ''}"
            f"  commit: {_cell(view['leader_commit'])}")
    return head + "\n\n" + _peers_table(view, wide=wide)


def _watch(args: argparse.Namespace) -> int:
    """A live terminal view of the cluster: redrawn every ``--interval``
    seconds until Ctrl-C; ``--once`` draws one frame and exits."""
    clear = "" if args.once or not sys.stdout.isatty() else "\x1b[H\x1b[2J"
    try:
        while True:
            stamp = time.strftime("%H:%M:%S")
            try:
                frame, code = watch_frame(args.addr, cluster_view(args.addr), stamp, args.wide), 0
            except _ClientError as exc:
                frame, code = f"raftkv watch  {args.addr}  {stamp}\n\nraftkv: {exc}", 1
            except CLIENT_ERRORS as exc:
                frame = f"raftkv watch  {args.addr}  {stamp}\n\nraftkv: {unreachable_line(args.addr, exc)}"
                code = 2
            print(clear + frame, flush=True)
            if args.once:
                return code
            time.sleep(args.interval)
    except KeyboardInterrupt:  # how one leaves a watch: not a failure
        print()
        return 0


def _print_peers_json(args: argparse.Namespace) -> int:
    try:
        status, body = _request(args.addr, "GET", "/peers")
    except CLIENT_ERRORS as exc:
        return _unreachable(args.addr, exc)
    if status != 200 or not isinstance(body, list):
        print(f"raftkv: {_error_line(status, body)}", file=sys.stderr)
        return 1
    print(_json_line(body))
    return 0


def _wait(args: argparse.Namespace) -> int:
    """``raftkv wait``: poll until the node at --addr answers (and knows a
    leader, and the leader's configuration has N voters); 1 and one line
    saying what was missing at --timeout."""
    goal = (f"the leader of {args.addr} to have {args.voters} voters" if args.voters
            else f"{args.addr} to know a leader" if args.leader else f"{args.addr} to answer")
    started = time.monotonic()
    deadline = started + args.timeout
    said = False
    while True:
        missing = _not_ready(args)
        if missing is None:
            return 0
        now = time.monotonic()
        if now >= deadline:
            print(f"raftkv wait: timed out after {args.timeout:g}s waiting for {goal}: {missing}",
                  file=sys.stderr)
            return 1
        if not said and now - started >= 1.0:
            print(f"raftkv wait: waiting up to {args.timeout:g}s for {goal} ...", file=sys.stderr)
            said = True
        time.sleep(min(0.2, deadline - now))


def _not_ready(args: argparse.Namespace) -> str | None:
    """What keeps ``raftkv wait`` waiting, or None once ready."""
    try:
        code, st = _request(args.addr, "GET", "/status", timeout=2.0)
    except CLIENT_ERRORS as exc:
        return unreachable_line(args.addr, exc)
    if code != 200 or not isinstance(st, dict):
        return _error_line(code, st)
    if not (args.leader or args.voters):
        return None
    leader = st.get("leader") or {}
    if not leader.get("id"):
        return f"{args.addr} knows no leader yet (it is a {str(st.get('state', '?')).lower()})"
    if not args.voters:
        return None
    if st.get("state") != "Leader":
        if not leader.get("http"):
            return f"{args.addr} does not know the HTTP address of the leader ({leader['id']}) yet"
        try:
            code, st = _request(leader["http"], "GET", "/status", timeout=2.0)
        except CLIENT_ERRORS as exc:
            return f"the leader ({leader['id']}): {unreachable_line(leader['http'], exc)}"
        if code != 200 or not isinstance(st, dict):
            return f"the leader ({leader['id']}): {_error_line(code, st)}"
    voters = [s.get("id") for s in st.get("latest_configuration") or [] if s.get("suffrage") == "Voter"]
    if len(voters) < args.voters:
        return (f"the leader's configuration has {len(voters)} voter{'s' if len(voters) != 1 else ''}"
                f" ({', '.join(map(str, voters))})")
    return None


def _snapshot(args: argparse.Namespace) -> int:
    """``snapshot take|save|restore``: the backup routes, streamed to or from
    a file so a large state never sits in memory whole."""
    if args.action == "take":
        return _client(args, "POST", "/snapshot")
    base = _base_url(args.addr)
    try:
        if args.action == "save":
            return _snapshot_save(base, args.file)
        return _snapshot_restore(base, args.file)
    except urllib.error.HTTPError as exc:
        print(f"raftkv: {_error_line(exc.code, _decode(exc.read()))}", file=sys.stderr)
        return 1
    except CLIENT_ERRORS as exc:
        if getattr(exc, "filename", None):  # the local file, not the node
            print(f"raftkv: snapshot {args.action}: {exc}", file=sys.stderr)
            return 1
        return _unreachable(args.addr, exc)


def _snapshot_save(base: str, path: str) -> int:
    import zlib
    tmp = path + ".part"
    req = urllib.request.Request(base + "/snapshot", headers=_auth_headers())
    with _urlopen(req, 600) as resp, open(tmp, "wb") as out:
        crc, size = 0, 0
        while chunk := resp.read(1024 * 1024):
            out.write(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
        want_crc = resp.headers.get("X-Raftkv-Snapshot-Crc32")
        want_size = resp.headers.get("Content-Length")
        index, term = resp.headers.get("X-Raftkv-Snapshot-Index"), resp.headers.get("X-Raftkv-Snapshot-Term")
    if (want_size is not None and int(want_size) != size) or (want_crc is not None and int(want_crc) != crc):
        os.unlink(tmp)
        print(f"raftkv: snapshot save: download damaged (got {size} bytes, crc {crc}; "
              f"expected {want_size} bytes, crc {want_crc})", file=sys.stderr)
        return 1
    os.replace(tmp, path)
    print(_json_line({"file": path, "bytes": size, "index": int(index or 0), "term": int(term or 0),
                      "crc32": crc}))
    return 0


def _snapshot_restore(base: str, path: str) -> int:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        req = urllib.request.Request(base + "/restore", data=f, method="POST",
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Length": str(size), **_auth_headers()})
        with _urlopen(req, 600) as resp:
            print(_json_line(_decode(resp.read())))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(os.environ, args)
    except ConfigError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from ..observability.eventlog import install
    install(settings.node_id)  # keep recent log records for /ui from the first line on
    from ..main import run_node
    return run_node(settings)


ADDR_HELP = f"HTTP address of any node (default: {DEFAULT_ADDR}, env RAFTKV_ADDR)"
CACERT_HELP = ("CA certificate (PEM) to verify the nodes' HTTPS with; host:port addresses then "
               "mean https (env RAFTKV_CACERT)")


def _resolve_addr(args: argparse.Namespace) -> None:
    """``args.addr``: given after the subcommand, else before it, else
    RAFTKV_ADDR, else the default."""
    addr = getattr(args, "addr", None) or args.global_addr
    args.addr = addr or os.environ.get("RAFTKV_ADDR") or DEFAULT_ADDR
    args.cacert = getattr(args, "cacert", None) or args.global_cacert or os.environ.get("RAFTKV_CACERT") or None


def _use_cacert(cafile: str | None) -> None:
    """The client SSL context of every request (urllib here, bench's own)."""
    global _tls_context
    if cafile:
        from ..config.tls import client_context_for_ca
        _tls_context = client_context_for_ca(cafile)


def _value_of(body: object) -> str:
    """``raftkv get``: the value alone, as a shell script wants it."""
    if isinstance(body, dict) and isinstance(body.get("value"), str):
        return body["value"]
    return json.dumps(body, ensure_ascii=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftkv", description="A Raft key-value store.")
    # --addr is accepted before the subcommand (raftkv --addr URL get k) and
    # after it (raftkv get k --addr URL). Both spellings store None unless
    # given, because a subparser's default would overwrite the value given
    # before it; _resolve_addr picks the one given, else env, else default.
    parser.add_argument("--addr", dest="global_addr", metavar="ADDR", help=ADDR_HELP)
    parser.add_argument("--cacert", dest="global_cacert", metavar="FILE", help=CACERT_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a node (settings from env, flags win)",
                           description="Run a node. Each setting is a flag or an environment "
                                       "variable; a flag wins over its variable.")
    add_serve_arguments(serve)

    def client(name: str, help: str, **more) -> argparse.ArgumentParser:
        if "epilog" in more:
            more["formatter_class"] = argparse.RawDescriptionHelpFormatter
        p = sub.add_parser(name, help=help, **more)
        p.add_argument("--addr", metavar="ADDR", help=ADDR_HELP)
        p.add_argument("--cacert", metavar="FILE", help=CACERT_HELP)
        return p

    client("status", help="show a node's Raft status")
    p = client("peers", help="list the cluster's servers", description="List the cluster's servers: "
               "the leader's member list joined with each server's own /status.", epilog=PEERS_LEGEND)
    p.add_argument("--json", action="store_true", help="print the leader's /peers answer instead of a table")
    p.add_argument("--wide", action="store_true", help="every column (wider than 100 characters)")
    p = client("get", help="read a key: prints its value")
    p.add_argument("key")
    p.add_argument("--stale", action="store_true", help="read the node's local copy (may be stale)")
    p.add_argument("--json", action="store_true", help="print the JSON answer instead of the value")
    p = client("set", help="write a key", description="Write a key. The value is the argument, or the "
               "bytes of a file (--value-file FILE, or - for stdin) as they are, UTF-8 text; it travels "
               "in the request's body, so it may be as large as the node's HTTP_MAX_BODY.")
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="the value; - reads it from stdin")
    p.add_argument("--value-file", metavar="FILE",
                   help="read the value from FILE (for values too long for a command line)")
    p = client("remove", help="delete a key")
    p.add_argument("key")
    p = client("remove-peer", help="remove a server from the cluster")
    p.add_argument("node_id")
    p = client("transfer-leadership", help="hand leadership to another voter")
    p.add_argument("--to", help="the voter to hand it to (default: the most up-to-date one)")
    p = client("watch", help="live view of the cluster (Ctrl-C exits)",
               description="raftkv peers, redrawn every --interval seconds.", epilog=PEERS_LEGEND)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--wide", action="store_true", help="every column (wider than 100 characters)")
    p = client("wait", help="wait until a node answers, knows a leader, or has N voters",
               description="Poll the node at --addr until it answers (and, with --leader, knows a "
                           "leader; with --voters N, the leader's configuration has N voters). Exits 0 "
                           "once ready, 1 at --timeout with a line saying what was missing.")
    p.add_argument("--leader", action="store_true", help="until the node knows a leader")
    p.add_argument("--voters", type=int, metavar="N", help="until the leader's configuration has N voters")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="give up after this long (default: 60)")
    p = client("join", help="add a server to the cluster (as a nonvoter unless --voter)")
    p.add_argument("node_id")
    p.add_argument("raft_addr", help="the new server's Raft address, host:port")
    p.add_argument("--http-addr", help="the new server's HTTP address, host:port")
    p.add_argument("--voter", action="store_true", help="add as a voter right away")
    p = client("snapshot", help="take a snapshot now, or save / restore a backup of the whole store")
    p.add_argument("action", choices=("take", "save", "restore"))
    p.add_argument("file", nargs="?", help="the backup file (save, restore)")
    sub.add_parser("sim", help="deterministic cluster simulator (raftkv.sim)", add_help=False)
    sub.add_parser("replay", help="replay nodes' RAFT_TRACE files through a fresh Raft core", add_help=False)
    from .bench import add_arguments as add_bench_arguments
    bench = sub.add_parser("bench", help="closed-loop load test of a running cluster over HTTP")
    add_bench_arguments(bench)
    bench.set_defaults(addr=None, cacert=None)  # so `raftkv --addr URL bench` counts; _resolve_addr fills it in
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a reader that went away (``raftkv watch | head``)
    or Ctrl-C ends it without a traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
        return code
    except BrokenPipeError:
        # Python's advice (docs of signal, "Note on SIGPIPE"): point stdout at
        # devnull so the interpreter's own flush at exit fails no more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def _set(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``raftkv set KEY VALUE | KEY - | KEY --value-file FILE``: the value
    goes in the body (text/plain), never in the URL, whatever its size."""
    if (args.value is None) == (args.value_file is None):
        parser.error("set needs a VALUE, or - (stdin), or --value-file FILE")
    if args.value_file is not None or args.value == "-":
        source = args.value_file if args.value_file is not None else "-"
        try:
            if source == "-":
                raw = sys.stdin.buffer.read()
            else:
                with open(source, "rb") as f:
                    raw = f.read()
        except OSError as exc:
            print(f"raftkv set: cannot read the value: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            name = "stdin" if source == "-" else source
            print(f"raftkv set: {name} is not UTF-8 text (byte {exc.start}): raftkv stores text values",
                  file=sys.stderr)
            return EXIT_USAGE
    else:
        raw = args.value.encode("utf-8", "surrogateescape")
    return _client(args, "POST", "/set", {"key": args.key}, body=raw,
                   content_type="text/plain; charset=utf-8")


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":
        try:
            sim = importlib.import_module("raftkv.sim.cli")
        except ImportError:
            print("raftkv sim: the simulator (raftkv.sim.cli) is not available", file=sys.stderr)
            return EXIT_USAGE
        import inspect
        if inspect.signature(sim.main).parameters:
            return sim.main(argv[1:]) or 0
        sys.argv = ["raftkv sim", *argv[1:]]
        return sim.main() or 0
    if argv and argv[0] == "replay":
        try:
            sim = importlib.import_module("raftkv.sim.cli")
        except ImportError:
            print("raftkv replay: the simulator (raftkv.sim.cli) is not available", file=sys.stderr)
            return EXIT_USAGE
        return sim.replay_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve_addr(args)
    if args.command == "serve":
        return _serve(args)
    if args.command is not None and args.command != "bench":
        try:
            _use_cacert(args.cacert)
        except ValueError as exc:
            print(f"raftkv: --cacert: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.command not in (None, "bench"):  # bench takes a list and checks it itself
        problem = addr_problem(args.addr)
        if problem:
            print(f"raftkv: --addr {args.addr}: {problem} (expected host:port or http(s)://host:port)",
                  file=sys.stderr)
            return EXIT_USAGE
    if args.command == "status":
        return _client(args, "GET", "/status")
    if args.command == "peers":
        return _print_peers(args)
    if args.command == "get":
        return _client(args, "GET", "/get", {"key": args.key, "stale": "true" if args.stale else None},
                       show=None if args.json else _value_of)
    if args.command == "set":
        return _set(args, parser)
    if args.command == "remove":
        return _client(args, "POST", "/remove", {"key": args.key})
    if args.command == "join":
        return _client(args, "POST", "/join", {"nodeId": args.node_id, "raftAddr": args.raft_addr,
                                              "httpAddr": args.http_addr,
                                              "voter": "true" if args.voter else None})
    if args.command == "snapshot":
        if args.action != "take" and not args.file:
            parser.error(f"snapshot {args.action} needs a FILE")
        return _snapshot(args)
    if args.command == "remove-peer":
        return _client(args, "POST", "/remove-peer", {"nodeId": args.node_id})
    if args.command == "transfer-leadership":
        return _client(args, "POST", "/transfer-leadership", {"to": args.to})
    if args.command == "watch":
        return _watch(args)
    if args.command == "wait":
        if args.voters is not None and args.voters < 1:
            parser.error("--voters must be 1 or more")
        return _wait(args)
    if args.command == "bench":
        return importlib.import_module("raftkv.cli.bench").main(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE
