"""The ``raftkv`` command: run a node, or talk to one over HTTP.

Theory of operation: ``raftkv serve`` turns flags + environment into
:class:`~raftkv.config.NodeSettings` (a bad value exits with status 2 and a
message naming the variable) and runs :func:`raftkv.server.run_node` until
SIGTERM/SIGINT. The client subcommands (``status``, ``peers``, ``get``,
``set``, ``remove``, ``join``) are thin wrappers over the HTTP API of
DESIGN §5 using only the standard library, so they start fast; they print
the JSON answer and exit 0 on a 2xx status, else print the error to stderr
and exit 1 (2 if the node cannot be reached). ``sim`` hands over to
``raftkv.sim.cli`` when that package provides it.
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


def _request(addr: str, method: str, path: str, params: dict | None = None,
             timeout: float = 30.0) -> tuple[int, object]:
    base = addr if "://" in addr else "http://" + addr
    url = base.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def _client(args: argparse.Namespace, method: str, path: str, params: dict | None = None) -> int:
    try:
        status, body = _request(args.addr, method, path, params)
    except (urllib.error.URLError, OSError) as exc:
        print(f"raftkv: cannot reach {args.addr}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    text = json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body
    if 200 <= status < 300:
        print(text)
        return 0
    print(f"raftkv: HTTP {status}: {text}", file=sys.stderr)
    return 1


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _print_peers(args: argparse.Namespace) -> int:
    try:
        status, body = _request(args.addr, "GET", "/peers")
    except (urllib.error.URLError, OSError) as exc:
        print(f"raftkv: cannot reach {args.addr}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    if status != 200 or not isinstance(body, list):
        print(f"raftkv: HTTP {status}: {body}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    cols = ("id", "address", "suffrage", "leader", "last_contact", "healthy", "http")
    rows = [[_cell(r.get(c)) for c in cols] for r in body]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(os.environ, args)
    except ConfigError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from .server import run_node
    return run_node(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftkv", description="A Raft key-value store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a node (settings from env, flags win)")
    add_serve_arguments(serve)

    def client(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--addr", default=os.environ.get("RAFTKV_ADDR", DEFAULT_ADDR),
                       help=f"HTTP address of any node (default {DEFAULT_ADDR}, env RAFTKV_ADDR)")
        return p

    client("status", help="show a node's Raft status")
    p = client("peers", help="list the cluster's servers")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = client("get", help="read a key")
    p.add_argument("key")
    p.add_argument("--stale", action="store_true", help="read the node's local copy (may be stale)")
    p = client("set", help="write a key")
    p.add_argument("key")
    p.add_argument("value")
    p = client("remove", help="delete a key")
    p.add_argument("key")
    p = client("join", help="add a server to the cluster (as a nonvoter unless --voter)")
    p.add_argument("node_id")
    p.add_argument("raft_addr", help="the new server's Raft address, host:port")
    p.add_argument("--http-addr", help="the new server's HTTP address, host:port")
    p.add_argument("--voter", action="store_true", help="add as a voter right away")
    sub.add_parser("sim", help="deterministic cluster simulator (raftkv.sim)", add_help=False)
    from .bench import add_arguments as add_bench_arguments
    add_bench_arguments(sub.add_parser("bench", help="closed-loop load test of a running cluster over HTTP"))
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "status":
        return _client(args, "GET", "/status")
    if args.command == "peers":
        return _print_peers(args)
    if args.command == "get":
        return _client(args, "GET", "/get", {"key": args.key, "stale": "true" if args.stale else None})
    if args.command == "set":
        return _client(args, "POST", "/set", {"key": args.key, "value": args.value})
    if args.command == "remove":
        return _client(args, "POST", "/remove", {"key": args.key})
    if args.command == "join":
        return _client(args, "POST", "/join", {"nodeId": args.node_id, "raftAddr": args.raft_addr,
                                              "httpAddr": args.http_addr,
                                              "voter": "true" if args.voter else None})
    if args.command == "bench":
        return importlib.import_module("raftkv.bench").main(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE
