"""The commands that look at the whole cluster: ``raftkv peers`` (the leader's
member list joined with each member's own ``/status``, as a table like ``vault
operator raft list-peers``), ``raftkv watch`` (that table, redrawn) and
``raftkv wait`` (poll until a node answers, knows a leader, or its leader has
N voters).
"""

from __future__ import annotations

import argparse
import sys
import time

from ..config.textforms import go_duration
from .client import CLIENT_ERRORS, _error_line, _json_line, _request, _unreachable, unreachable_line

# Tables fit this many columns unless --wide.
TABLE_WIDTH = 100


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
