"""A raftkv cluster of separate hosts on one machine: one network namespace
per node, a bridge between them, and faults on the links.

Theory of operation
-------------------
Layout (nothing is ever added to the root namespace)::

    <prefix>-sw      the "switch": bridge br0 (10.77.0.1/24), veth v1..vN
    <prefix>-n1      eth0 10.77.0.11/24 (peer of v1), lo 127.0.0.1 and the link addresses
    <prefix>-n2      eth0 10.77.0.12/24 ...

``<prefix>`` is ``rkvnet-<pid of the owner>``: two clusters never share a
namespace, and one left by a killed run is recognised (its owner is dead)
and removed by the next :class:`NetCluster`. Every address is in
10.77.0.0/24 and lives only inside these namespaces; since each cluster has
its own switch, two clusters may use the same addresses at once.

Node ``i`` serves HTTP on 10.77.0.(10+i):8000 and Raft on
10.77.0.(10+i):9000 -- every node on the same ports, like real hosts. It
*advertises* its Raft address as the **link address** 10.77.0.(100+i):9000.
That address is put on the loopback of every node's namespace, where the
node's link proxy (``raftkv/chaos/linkproxy.py``, one process per namespace)
listens on it and forwards to 10.77.0.(10+i):9000 across the bridge. The
transport is one-way per connection (a node sends replies over its own
dials), so the proxy in node A's namespace that listens on B's link address
carries exactly the messages A sends to B: it *is* the directed link A -> B,
and delay, loss, duplication and reordering set on it act on that direction
only. HTTP between nodes (forwarding to the leader, joining) goes straight to
the real addresses, so it crosses the same routes but no proxy.

Partitions are routes inside node namespaces: ``ip route add blackhole
10.77.0.12/32`` in n1's namespace silences n1 towards n2, both for its
proxies and for its HTTP. A full cut puts the route on both sides; a one-way
cut at the message level is a link proxy dropping every frame
(:meth:`NetCluster.cut_oneway`), because TCP needs both directions and a
one-sided route stalls a connection either way (:meth:`NetCluster.block_route`
still does that, for the record). Processes get kill -9 and SIGSTOP/SIGCONT.

The test process stays in the root namespace and reaches nodes through a
gateway (``raftkv/chaos/netgateway.py``): listeners on 127.0.0.1 made in the
root namespace by a process that then moved into the switch namespace, so
``node.http_addr`` is a plain ``127.0.0.1:PORT`` that curl can use too. The
client's traffic enters each node over its eth0, from 10.77.0.1.

Every fault, kill and restart is appended to :attr:`NetCluster.events` with
its time, so a failing test can draw what happened (:func:`write_timeline`).
One node, its process and its HTTP API, is a :class:`~.netnode.NetNode`.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .netnode import RAFT_PORT, REPO, SUBNET, NetNode, _ip, wait_until

__all__ = ["NetCluster", "NamespaceUnavailable", "namespaces_available", "write_timeline", "cleanup_stale"]

SWITCH_ADDR = f"{SUBNET}.1"
PREFIX = "rkvnet-"


class NamespaceUnavailable(RuntimeError):
    """This machine (or user) cannot create network namespaces."""


def namespaces_available() -> str | None:
    """None if ``ip netns add`` works here, else why not."""
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        proc = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run ip: {exc}"
    if proc.returncode != 0:
        return f"ip netns add failed: {proc.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(name: str) -> None:
    """Kill what still runs inside (only processes this module started live
    there) and remove the namespace; its veth ends go with it."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def cleanup_stale() -> list[str]:
    """Remove namespaces of this module whose owner process is gone."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if m and not _pid_alive(int(m.group(1))):
            _delete_namespace(name)
            removed.append(name)
    return removed


@dataclass
class Event:
    at: float
    kind: str  # fault, heal, op, node
    text: str
    ok: bool | None = None


class NetCluster:
    """N nodes in namespaces (see the module docstring); :meth:`close`
    removes every process, namespace and link, whatever happened before."""

    def __init__(self, root: Path, size: int, env: dict[str, str] | None = None, seed: int | None = None) -> None:
        self.root = Path(root)
        self.size = size
        self.env = dict(env or {})
        self.seed = seed
        self.prefix = f"{PREFIX}{os.getpid()}"
        self.switch = f"{self.prefix}-sw"
        self.nodes: dict[str, NetNode] = {f"n{i}": NetNode(self, i) for i in range(1, size + 1)}
        self.gateway: subprocess.Popen | None = None
        self.routes: set[tuple[str, str]] = set()  # (node id, blocked peer id)
        self.events: list[Event] = []
        self.t0 = time.monotonic()
        self._made: list[str] = []

    def note(self, kind: str, text: str, ok: bool | None = None) -> None:
        self.events.append(Event(time.monotonic() - self.t0, kind, text, ok))

    def __getitem__(self, node_id: str) -> NetNode:
        return self.nodes[node_id]

    def __enter__(self) -> "NetCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def create(self) -> "NetCluster":
        """Namespaces, bridge, veths, addresses, proxies and the gateway."""
        why = namespaces_available()
        if why:
            raise NamespaceUnavailable(why)
        cleanup_stale()
        for name in [self.switch] + [n.netns for n in self.nodes.values()]:
            _delete_namespace(name)  # a reused pid's leftovers
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._make_namespaces()
            self._start_proxies()
            self._start_gateway()
        except BaseException:
            self.close()
            raise
        return self

    def _make_namespaces(self) -> None:
        sw = self.switch
        _ip("netns", "add", sw)
        self._made.append(sw)
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "addr", "add", f"{SWITCH_ADDR}/24", "dev", "br0")
        _ip("-n", sw, "link", "set", "br0", "up")
        for node in self.nodes.values():
            ns = node.netns
            _ip("netns", "add", ns)
            self._made.append(ns)
            # created inside the switch, the peer end moved straight into the
            # node: no interface ever exists in the root namespace
            veth = f"v{node.index}"
            _ip("-n", sw, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", sw, "link", "set", veth, "master", "br0")
            _ip("-n", sw, "link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            for peer in self.nodes.values():
                _ip("-n", ns, "addr", "add", f"{peer.link_ip}/32", "dev", "lo")

    def _start_proxies(self) -> None:
        for node in self.nodes.values():
            args = ["ip", "netns", "exec", node.netns, sys.executable, "-m", "raftkv.chaos.linkproxy",
                    "--control", str(node.control_path)]
            if self.seed is not None:
                args += ["--seed", str(self.seed * 100 + node.index)]
            for peer in self.nodes.values():
                args += ["--link", f"{peer.id}={peer.link_ip}:{RAFT_PORT},{peer.ip}:{RAFT_PORT}"]
            node.dir.mkdir(parents=True, exist_ok=True)
            node.proxy = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=open(node.dir / "proxy.log", "ab"), text=True,
                                          env={**os.environ, "PYTHONPATH": str(REPO)})
        for node in self.nodes.values():
            line = node.proxy.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"link proxy of {node.id} did not start: "
                                   f"{(node.dir / 'proxy.log').read_text()[-2000:]}")

    def _start_gateway(self) -> None:
        args = [sys.executable, "-m", "raftkv.chaos.netgateway", "--netns", self.switch]
        for node in self.nodes.values():
            args += ["--target", f"{node.id}={node.real_http}"]
        self.gateway = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=open(self.root / "gateway.log", "ab"), text=True,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})
        ports = json.loads(self.gateway.stdout.readline() or "{}")
        if not ports:
            raise RuntimeError(f"gateway did not start: {(self.root / 'gateway.log').read_text()[-2000:]}")
        for node_id, port in ports.items():
            self.nodes[node_id].local_port = port

    def close(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node._signal(signal.SIGKILL)
        procs = [n.proxy for n in self.nodes.values()] + [self.gateway]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        for name in reversed(self._made):
            _delete_namespace(name)
        self._made.clear()

    # ------------------------------------------------------------ forming

    def form(self, ids: list[str] | None = None, timeout: float = 30.0) -> NetNode:
        """Start every node at once (the first bootstraps), then add the rest
        with ``/join`` on the first, as an operator would with curl; wait
        until all are voters with their HTTP addresses known. Returns the
        first node. (Starting them all together saves a Python start-up per
        node over RAFT_JOIN's retry backoff.)"""
        ids = ids or list(self.nodes)
        first = self.nodes[ids[0]].start(bootstrap=True)
        for node_id in ids[1:]:
            self.nodes[node_id].start()
        first.wait_ready()
        wait_until(lambda: first.state() == "Leader", timeout, what=f"{first.id} to lead")
        for node_id in ids[1:]:
            node = self.nodes[node_id].wait_ready()
            resp = first.request("POST", "/join", {"nodeId": node.id, "raftAddr": node.raft_addr,
                                                   "httpAddr": node.real_http}, timeout=15)
            assert resp.status == 200, f"join of {node.id}: {resp}"

        def all_voters():
            leader = self.leader(timeout=5)
            conf = {s["id"]: s["suffrage"] for s in leader.status()["latest_configuration"]}
            peers = leader.get("/peers").json()
            return all(conf.get(i) == "Voter" for i in ids) and all(p["http"] for p in peers)
        wait_until(all_voters, timeout, what=f"{ids} to be voters")
        return first

    def running(self) -> list[NetNode]:
        return [n for n in self.nodes.values() if n.running and not n.paused]

    def leaders(self, among: list[NetNode] | None = None) -> list[NetNode]:
        return [n for n in (among or self.running()) if n.state() == "Leader"]

    def leader(self, timeout: float = 15.0, among: list[str] | None = None) -> NetNode:
        """The one node of ``among`` (default: all running) that says it leads."""
        def find():
            pool = [self.nodes[i] for i in among] if among else self.running()
            pool = [n for n in pool if n.running and not n.paused]
            found = self.leaders(pool)
            return found[0] if len(found) == 1 else None
        return wait_until(find, timeout, what=f"a single leader among {among or 'the running nodes'}")

    def terms(self, nodes: list[NetNode] | None = None) -> dict[str, int]:
        out = {}
        for n in nodes or self.running():
            with contextlib.suppress(Exception):
                out[n.id] = n.status()["term"]
        return out

    # ------------------------------------------------------------ faults: routes

    def block_route(self, src: str, dst: str) -> None:
        """In ``src``'s namespace, send nothing to ``dst`` (a blackhole route)."""
        if (src, dst) in self.routes:
            return
        _ip("-n", self.nodes[src].netns, "route", "add", "blackhole", f"{self.nodes[dst].ip}/32")
        self.routes.add((src, dst))

    def unblock_route(self, src: str, dst: str) -> None:
        if (src, dst) in self.routes:
            _ip("-n", self.nodes[src].netns, "route", "del", "blackhole", f"{self.nodes[dst].ip}/32", check=False)
            self.routes.discard((src, dst))

    def cut(self, a: str, b: str) -> None:
        """No packet between a and b, either way."""
        self.block_route(a, b)
        self.block_route(b, a)
        self.note("fault", f"cut {a} <-> {b}")

    def partition(self, *groups: list[str]) -> None:
        """Split the cluster: nodes of different groups cannot talk; a node
        named in no group is cut off from everyone."""
        listed = {i for g in groups for i in g}
        groups = [list(g) for g in groups] + [[i] for i in self.nodes if i not in listed]
        side = {i: k for k, g in enumerate(groups) for i in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and side[a] != side[b]:
                    self.block_route(a, b)
        self.note("fault", "partition " + " | ".join(",".join(g) for g in groups))

    def isolate(self, node_id: str) -> None:
        self.partition([i for i in self.nodes if i != node_id], [node_id])

    def heal_routes(self) -> None:
        for src, dst in list(self.routes):
            self.unblock_route(src, dst)
        self.note("heal", "routes healed")

    # ------------------------------------------------------------ faults: links

    def link(self, src: str, dst: str, **faults: float) -> None:
        """Set the faults of the directed link src -> dst (see linkproxy)."""
        self.nodes[src].proxy_control({"op": "set", "link": dst, "faults": faults})
        self.note("fault", f"link {src} -> {dst} " + " ".join(f"{k}={v}" for k, v in faults.items()))

    def all_links(self, **faults: float) -> None:
        for a in self.nodes:
            for b in self.nodes:
                if a != b:
                    self.nodes[a].proxy_control({"op": "set", "link": b, "faults": faults})
        self.note("fault", "every link " + " ".join(f"{k}={v}" for k, v in faults.items()))

    def cut_oneway(self, src: str, dst: str) -> None:
        """src's messages never reach dst; dst's still reach src."""
        self.nodes[src].proxy_control({"op": "set", "link": dst, "faults": {"loss": 1.0}})
        self.note("fault", f"one-way cut {src} -> {dst}")

    def heal_links(self) -> None:
        for node in self.nodes.values():
            node.proxy_control({"op": "heal"})
        self.note("heal", "links healed")

    def link_stats(self) -> dict[str, dict]:
        return {n.id: n.proxy_control({"op": "stats"}) for n in self.nodes.values()}

    def heal(self) -> None:
        self.heal_routes()
        self.heal_links()


def write_timeline(cluster: NetCluster, path: Path, title: str = "raftkv netns run") -> Path:
    """An HTML page: every operation, fault and heal of the run, in time
    order, faults highlighted, plus the last lines of each node's log."""
    colours = {"fault": "#f6d3d3", "heal": "#d3f0d8", "node": "#e3e6f6", "op": "#ffffff"}
    rows = []
    for ev in cluster.events:
        mark = "" if ev.ok is None else (" ✓" if ev.ok else " ✗")
        rows.append(f'<tr style="background:{colours.get(ev.kind, "#fff")}"><td>{ev.at:8.3f}s</td>'
                    f"<td>{ev.kind}</td><td>{html.escape(ev.text)}{mark}</td></tr>")
    logs = "".join(f"<h3>{n.id}</h3><pre>{html.escape(n.log()[-4000:])}</pre>" for n in cluster.nodes.values())
    path.write_text(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                    f"<h1>{html.escape(title)}</h1><table border=1 cellspacing=0 cellpadding=3>"
                    f"<tr><th>time</th><th>kind</th><th>what</th></tr>{''.join(rows)}</table>{logs}")
    return path


def _describe(cluster: NetCluster) -> str:
    lines = [f"raftkv cluster of {cluster.size} namespaced hosts (switch namespace {cluster.switch}, "
             f"bridge {SWITCH_ADDR}/24); data and logs under {cluster.root}", ""]
    lines.append(f"{'node':5} {'namespace':22} {'address':14} {'raft (advertised)':20} reach it from here")
    for n in cluster.nodes.values():
        lines.append(f"{n.id:5} {n.netns:22} {n.ip:14} {n.raft_addr:20} curl 'http://{n.http_addr}/status'")
    a, b = cluster.nodes["n1"], cluster.nodes.get("n2", cluster.nodes["n1"])
    lines += ["", "faults, by hand:",
              f"  partition n1 from n2:   ip -n {a.netns} route add blackhole {b.ip}/32; "
              f"ip -n {b.netns} route add blackhole {a.ip}/32",
              f"  heal it:                ip -n {a.netns} route del blackhole {b.ip}/32; "
              f"ip -n {b.netns} route del blackhole {a.ip}/32",
              f"  delay/loss on n1 -> n2: python -m raftkv.chaos.netns link {a.control_path} n2 delay_ms=100 loss=0.1",
              "  pause a node:           kill -STOP <pid>   (pids: "
              + ", ".join(f"{n.id}={n.proc.pid}" for n in cluster.nodes.values() if n.proc) + ")",
              "", "Ctrl-C removes every namespace, link and process."]
    return "\n".join(lines)


def _link_command(argv: list[str]) -> int:
    """``link CONTROL_SOCKET PEER key=value ...``: set one directed link's faults."""
    import socket as _socket
    control, peer, *pairs = argv
    faults = {k: float(v) for k, v in (p.split("=", 1) for p in pairs)}
    request = {"op": "set", "link": peer, "faults": faults} if peer != "heal" else {"op": "heal"}
    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
        s.connect(control)
        s.sendall(json.dumps(request).encode() + b"\n")
        print(s.recv(65536).decode().strip())
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "link":
        return _link_command(argv[1:])
    parser = argparse.ArgumentParser(prog="scripts/netcluster.sh",
                                     description="run raftkv nodes as separate hosts in network namespaces")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dir", default=None, help="data and logs (default: a new temporary directory)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the link proxies' randomness")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 89:
        parser.error("--nodes must be between 1 and 89")
    root = Path(args.dir or tempfile.mkdtemp(prefix="raftkv-netcluster-"))
    cluster = NetCluster(root, args.nodes, env={"LOG_LEVEL": "INFO"}, seed=args.seed)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1) or (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cluster.create()
        cluster.form()
        print(_describe(cluster), flush=True)
        while True:
            time.sleep(3600)
    except NamespaceUnavailable as exc:
        print(f"cannot make network namespaces here: {exc} (run as root with iproute2)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntearing down ...", file=sys.stderr)
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
