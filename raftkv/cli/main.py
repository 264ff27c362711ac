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
with ``RAFT_TRACE`` fed through a fresh core), and ``lab`` to ``raftkv.lab.cli``
(the Raft lab, docs/lab.md). Output cut short by a closed
pipe (``raftkv watch | head``) or Ctrl-C ends the command quietly.

The requests and their error lines are :mod:`.client`'s; ``peers``, ``watch``
and ``wait``, which look at the whole cluster, are :mod:`.cluster`'s.
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

from ..config.settings import EXIT_USAGE, ConfigError, add_serve_arguments, load_settings
from .client import (
    CLIENT_ERRORS,
    _auth_headers,
    _base_url,
    _client,
    _decode,
    _error_line,
    _json_line,
    _unreachable,
    _urlopen,
    _use_cacert,
    addr_problem,
)
from .cluster import PEERS_LEGEND, _print_peers, _wait, _watch

DEFAULT_ADDR = "http://127.0.0.1:8000"
# The shell's status for a command killed by SIGPIPE: `raftkv watch | head`
# ends as `yes | head` does.
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


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


def _serve_recording(recording, host: str, port: int, out) -> int:
    from ..main import serve_recording
    return serve_recording(recording, host, port, out)


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
    p.add_argument("--stale", action="store_true", help="read the node's local copy (may be stale): --level none")
    p.add_argument("--level", choices=("none", "weak", "linearizable", "lease", "strong"),
                   help="how fresh the read must be (default linearizable; docs/reads.md)")
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
    sub.add_parser("lab", help="the Raft lab: write Raft's rules yourself, graded by the simulator (docs/lab.md)",
                   add_help=False)
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
    if argv and argv[0] == "lab":
        return importlib.import_module("raftkv.lab.cli").main(argv[1:], serve=_serve_recording)
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
        return _client(args, "GET", "/get", {"key": args.key, "stale": "true" if args.stale else None,
                                             "level": args.level},
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
