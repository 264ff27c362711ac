"""The ``raftkv`` command: run a node, or talk to one over HTTP.

Theory of operation: ``raftkv serve`` turns flags + environment into
:class:`~raftkv.config.NodeSettings` (a bad value exits with status 2 and a
message naming the variable) and runs :func:`raftkv.main.run_node` until
SIGTERM/SIGINT (exit 0). It exits 73 when the volume cannot be used, so
the node never started (read-only, not writable, less free space than
``RAFT_MIN_FREE_BYTES``, corrupt), 74 when the volume failed or went away
while the node ran, 1 for anything else (:mod:`raftkv.main`). The client
subcommands (``status``, ``peers``, ``get``,
``set``, ``remove``, ``join``, ``remove-peer``, ``transfer-leadership``,
``watch``, ``snapshot``) are thin wrappers over the HTTP API (README, "HTTP API")
using only the standard library, so they start fast; they print the JSON
answer (``get``: the value alone unless ``--json``; ``peers`` and ``watch``:
a table like ``vault operator raft list-peers``) and exit 0 on a 2xx status,
else print one line naming the error to stderr and exit 1 (2 if the node
cannot be reached). ``--addr`` goes before or after the subcommand. ``sim``
hands over to ``raftkv.sim.cli`` when that package provides it, and so does
``replay`` (``raftkv replay FILE...``: step traces a node recorded with
``RAFT_TRACE`` fed through a fresh core).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from .config import EXIT_USAGE, ConfigError, add_serve_arguments, load_settings

DEFAULT_ADDR = "http://127.0.0.1:8000"

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
             timeout: float = 30.0) -> tuple[int, object]:
    url = _base_url(addr) + path
    if params:
        url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None,
                                 headers=_auth_headers())
    try:
        with _urlopen(req, timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def _client(args: argparse.Namespace, method: str, path: str, params: dict | None = None,
            show=None) -> int:
    """One request; on success print ``show(body)`` (default: the JSON answer)."""
    try:
        status, body = _request(args.addr, method, path, params)
    except (urllib.error.URLError, OSError) as exc:
        return _unreachable(args.addr, exc)
    if 200 <= status < 300:
        if show is not None:
            print(show(body))
        else:
            print(json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body)
        return 0
    print(f"raftkv: {_error_line(status, body)}", file=sys.stderr)
    return 1


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
    print(f"raftkv: cannot reach {addr}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    return 2


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def cluster_view(addr: str, timeout: float = 3.0) -> dict:
    """The member list (from the leader, via ``addr``) joined with each
    member's own ``/status``; raises OSError/URLError if ``addr`` is down.
    Members that do not answer are reported as ``unreachable``."""
    from concurrent.futures import ThreadPoolExecutor
    status, peers = _request(addr, "GET", "/peers", timeout=timeout)
    if status != 200 or not isinstance(peers, list):
        raise _ClientError(status, peers)

    def fetch(peer: dict) -> dict | None:
        if not peer.get("http"):
            return None
        try:
            code, st = _request(peer["http"], "GET", "/status", timeout=timeout)
        except (urllib.error.URLError, OSError):
            return None
        return st if code == 200 and isinstance(st, dict) else None
    with ThreadPoolExecutor(max(1, len(peers))) as pool:
        statuses = list(pool.map(fetch, peers))
    leader_commit = None
    for peer, st in zip(peers, statuses):
        if st and st.get("state") == "Leader":
            leader_commit = st.get("commit_index")
    rows = []
    for peer, st in zip(peers, statuses):
        commit = st.get("commit_index") if st else peer.get("match_index")
        rows.append({
            "node": peer["id"], "address": peer.get("address", ""), "http": peer.get("http"),
            "state": (st.get("state", "?").lower() if st else "unreachable"),
            "voter": peer.get("suffrage") == "Voter", "commit_index": commit,
            "applied_index": st.get("applied_index") if st else None,
            "term": st.get("term") if st else None,
            "last_contact": peer.get("last_contact"),
            "healthy": peer.get("healthy"),
            "last_term": st.get("last_log_term") if st else None,
            "last_index": st.get("last_log_index") if st else None,
            "lag_entries": peer.get("lag_entries"),
            "trails_leader_by": (leader_commit - commit) if leader_commit is not None and commit is not None
            else None,
        })
    return {"leader_commit": leader_commit, "servers": rows}


class _ClientError(Exception):
    def __init__(self, status: int, body: object) -> None:
        super().__init__(_error_line(status, body))
        self.status = status
        self.body = body


def _peers_table(view: dict, wide: bool = False) -> str:
    """The columns of ``vault operator raft autopilot state`` that apply
    (Healthy, Last Contact, Last Term, Last Index), the leader's replication
    lag in entries, and raftkv's commit view."""
    headers = ["Node", "Address", "State", "Voter", "Healthy", "Last Contact", "Last Term", "Last Index",
               "Lag", "Commit Index", "Trails Leader By"]
    if wide:
        headers += ["Term", "Applied Index"]
    rows = []
    for r in view["servers"]:
        lc = r.get("last_contact")
        row = [r["node"], r["address"], r["state"], _cell(r["voter"]), _cell(r.get("healthy")),
               "" if lc is None else f"{lc}ms", _cell(r.get("last_term")), _cell(r.get("last_index")),
               _cell(r.get("lag_entries")), _cell(r["commit_index"]), _cell(r["trails_leader_by"])]
        if wide:
            row += [_cell(r["term"]), _cell(r["applied_index"])]
        rows.append(row)
    return _table(headers, rows)


def _print_peers(args: argparse.Namespace) -> int:
    if not args.json:
        try:
            view = cluster_view(args.addr)
        except _ClientError as exc:
            print(f"raftkv: {exc}", file=sys.stderr)
            return 1
        except (urllib.error.URLError, OSError) as exc:
            return _unreachable(args.addr, exc)
        print(_peers_table(view))
        return 0
    return _print_peers_json(args)


def _watch(args: argparse.Namespace) -> int:
    """A live terminal view of the cluster: redrawn every ``--interval``
    seconds until Ctrl-C; ``--once`` draws one frame and exits."""
    import time
    clear = "" if args.once or not sys.stdout.isatty() else "\x1b[H\x1b[2J"
    try:
        while True:
            stamp = time.strftime("%H:%M:%S")
            try:
                view = cluster_view(args.addr)
                leader = next((r for r in view["servers"] if r["state"] == "leader"), None)
                head = (f"raftkv watch  {args.addr}  {stamp}  leader: "
                        f"{leader['node'] if leader else 'none'}"
                        f"{'  term: ' + str(leader['term']) if leader else ''}"
                        f"  commit: {_cell(view['leader_commit'])}")
                frame, code = head + "\n\n" + _peers_table(view, wide=True), 0
            except _ClientError as exc:
                frame, code = f"raftkv watch  {args.addr}  {stamp}\n\nraftkv: {exc}", 1
            except (urllib.error.URLError, OSError) as exc:
                frame, code = (f"raftkv watch  {args.addr}  {stamp}\n\n"
                               f"raftkv: cannot reach {args.addr}: {getattr(exc, 'reason', exc)}"), 2
            print(clear + frame, flush=True)
            if args.once:
                return code
            time.sleep(args.interval)
    except KeyboardInterrupt:
        print()
        return 0


def _print_peers_json(args: argparse.Namespace) -> int:
    try:
        status, body = _request(args.addr, "GET", "/peers")
    except (urllib.error.URLError, OSError) as exc:
        return _unreachable(args.addr, exc)
    if status != 200 or not isinstance(body, list):
        print(f"raftkv: {_error_line(status, body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


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
        raw = exc.read().decode("utf-8", "replace")
        print(f"raftkv: HTTP {exc.code}: {raw}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"raftkv: snapshot {args.action}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2


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
    print(json.dumps({"file": path, "bytes": size, "index": int(index or 0), "term": int(term or 0),
                      "crc32": crc}))
    return 0


def _snapshot_restore(base: str, path: str) -> int:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        req = urllib.request.Request(base + "/restore", data=f, method="POST",
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Length": str(size), **_auth_headers()})
        with _urlopen(req, 600) as resp:
            print(resp.read().decode("utf-8", "replace"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(os.environ, args)
    except ConfigError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from .eventlog import install
    install(settings.node_id)  # keep recent log records for /ui from the first line on
    from .main import run_node
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
        from .tlsconfig import client_context_for_ca
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

    def client(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--addr", metavar="ADDR", help=ADDR_HELP)
        p.add_argument("--cacert", metavar="FILE", help=CACERT_HELP)
        return p

    client("status", help="show a node's Raft status")
    p = client("peers", help="list the cluster's servers")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = client("get", help="read a key: prints its value")
    p.add_argument("key")
    p.add_argument("--stale", action="store_true", help="read the node's local copy (may be stale)")
    p.add_argument("--json", action="store_true", help="print the JSON answer instead of the value")
    p = client("set", help="write a key")
    p.add_argument("key")
    p.add_argument("value")
    p = client("remove", help="delete a key")
    p.add_argument("key")
    p = client("remove-peer", help="remove a server from the cluster")
    p.add_argument("node_id")
    p = client("transfer-leadership", help="hand leadership to another voter")
    p.add_argument("--to", help="the voter to hand it to (default: the most up-to-date one)")
    p = client("watch", help="live view of the cluster (Ctrl-C exits)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
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
    if args.command == "status":
        return _client(args, "GET", "/status")
    if args.command == "peers":
        return _print_peers(args)
    if args.command == "get":
        return _client(args, "GET", "/get", {"key": args.key, "stale": "true" if args.stale else None},
                       show=None if args.json else _value_of)
    if args.command == "set":
        return _client(args, "POST", "/set", {"key": args.key, "value": args.value})
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
    if args.command == "bench":
        return importlib.import_module("raftkv.bench").main(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE
