"""Chaos on a real network: a mixed nemesis schedule against a namespaced
cluster (``raftkv/chaos/netns.py``), judged by the linearizability checker.

Theory of operation
-------------------
The clients of :mod:`raftkv.chaos.workload` talk to the nodes through the
cluster's gateway while the schedule breaks the network under them -- never
the node's own fault injection: route partitions (isolate the leader, a
random majority/minority split), a one-way cut of the leader's messages, and
delay or loss on every link through the link proxies -- and the processes
(kill -9 and restart, SIGSTOP/SIGCONT). Each fault is held until the clients
got some operations through or a hold time passed, then healed, and the
cluster settles (one leader, every node applied the commit index) before the
next one. Every fault's window is saved with the history, so the timeline
PNG marks them.

``scripts/chaos.sh --network real --minutes 2`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .checker import Verdict, check
from .history import FAIL, OK, UNKNOWN, FaultWindow, save_history, unavailability
from .netnode import wait_until
from .netns import NetCluster
from .report import report
from .workload import Workload

__all__ = ["FAULTS", "NetResult", "run_real_network"]

FAULTS = ("kill-leader", "pause-leader", "isolate-leader", "partition", "one-way-leader",
          "link-delay", "link-loss")
ENV = {"RAFT_APPLY_TIMEOUT": "2s", "LOG_LEVEL": "INFO"}


@dataclass
class NetResult:
    seed: int
    verdict: Verdict
    history: Path
    counts: dict[str, int]
    faults: list[FaultWindow]
    unavailable: dict[str, float]

    def summary(self) -> str:
        worst = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(self.unavailable.items())) or "none"
        return (f"network=real seed={self.seed} verdict={self.verdict.ok} ops={sum(self.counts.values())} "
                f"{self.counts} faults={len(self.faults)} longest-unavailable: {worst} history={self.history}")


def _inject(cluster: NetCluster, name: str, rng: random.Random) -> tuple[dict, object]:
    """Apply one fault; returns its detail and how to undo it."""
    leader = cluster.leader(timeout=30)
    others = [i for i in cluster.nodes if i != leader.id]
    if name == "kill-leader":
        leader.kill()
        return {"node": leader.id}, lambda: leader.start().wait_ready()
    if name == "pause-leader":
        leader.pause()
        return {"node": leader.id}, leader.resume
    if name == "isolate-leader":
        cluster.isolate(leader.id)
        return {"node": leader.id}, cluster.heal_routes
    if name == "partition":
        ids = list(cluster.nodes)
        rng.shuffle(ids)
        minority, majority = ids[:len(ids) // 2], ids[len(ids) // 2:]
        cluster.partition(majority, minority)
        return {"minority": minority, "majority": majority}, cluster.heal_routes
    if name == "one-way-leader":
        for peer in others:
            cluster.cut_oneway(leader.id, peer)
        return {"node": leader.id}, cluster.heal_links
    if name == "link-delay":
        ms = rng.choice([20, 80, 200])
        cluster.all_links(delay_ms=ms, jitter_ms=ms / 2)
        return {"delay_ms": ms}, cluster.heal_links
    if name == "link-loss":
        p = rng.choice([0.05, 0.2, 0.4])
        cluster.all_links(loss=p, duplicate=0.05, reorder=0.05)
        return {"loss": p}, cluster.heal_links
    raise ValueError(f"unknown fault {name!r}; choose from {', '.join(FAULTS)}")


def _settle(cluster: NetCluster, timeout: float = 30.0) -> None:
    leader = cluster.leader(timeout=timeout)
    commit = leader.status()["commit_index"]
    for node in cluster.running():
        wait_until(lambda n=node: n.status()["applied_index"] >= commit, timeout,
                   what=f"{node.id} to apply index {commit}")


def run_real_network(root: Path, duration: float, seed: int | None = None, nodes: int = 3,
                     clients: int = 4, keys: int = 4, hold: float = 2.0, out: Path | None = None,
                     check_limit: float = 120.0, faults: tuple[str, ...] = FAULTS) -> NetResult:
    seed = random.randrange(2**31) if seed is None else seed
    print(f"network=real: seed={seed}", flush=True)
    rng = random.Random(seed)
    cluster = NetCluster(root, nodes, env=ENV, seed=seed)
    windows: list[FaultWindow] = []
    workload = None
    try:
        cluster.create()
        cluster.form()
        workload = Workload(lambda: [(n.id, n.http_addr) for n in cluster.nodes.values()],
                            clients=clients, keys=keys, seed=seed, duration=duration + 120,
                            max_ops=100_000, key_prefix="real-")
        workload.start()
        workload.wait_ok(10, 0.0, 15)
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            name = rng.choice(faults)
            window = FaultWindow(name, workload.now())
            windows.append(window)
            detail, undo = _inject(cluster, name, rng)
            window.detail = detail
            print(f"[{window.start:7.2f}] nemesis: {name} {detail}", flush=True)
            try:
                workload.wait_ok(15, workload.now(), hold)
            finally:
                undo()
                window.end = workload.now()
                print(f"[{window.end:7.2f}] nemesis: healed {name}", flush=True)
            _settle(cluster)
        cluster.heal()
        _settle(cluster)
        workload.wait_ok(10, workload.now(), 15)
    finally:
        if workload is not None:
            workload.stop()
        cluster.close()
    ops = workload.history()
    end = workload.now()
    verdict = check(ops, time_limit=check_limit)
    path = save_history(Path(out or root) / f"history-real-{seed}.jsonl", ops, windows,
                        meta={"network": "real", "seed": seed, "nodes": nodes, "clients": clients,
                              "verdict": verdict.ok, "end": end})
    counts = {k: sum(1 for op in ops if op.outcome == k) for k in (OK, FAIL, UNKNOWN)}
    result = NetResult(seed, verdict, path, counts, windows, unavailability(ops, windows, end))
    print(result.summary(), flush=True)
    if verdict.ok is not True:
        print(verdict.explain(), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/chaos.sh --network real",
                                description="a mixed nemesis on namespaced nodes, faults on the network")
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--nemesis", default="mixed", help="mixed, or one of " + ", ".join(FAULTS))
    p.add_argument("--out", default="test-artifacts/chaos")
    p.add_argument("--png", action="store_true", help="also draw the timeline PNG")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="chaos-real-", dir=out))
    faults = FAULTS if args.nemesis == "mixed" else (args.nemesis,)
    result = run_real_network(root, args.minutes * 60, args.seed, args.nodes, args.clients, args.keys,
                              out=out, check_limit=max(300.0, args.minutes * 120), faults=faults)
    return report(result, root, args.png)


if __name__ == "__main__":
    raise SystemExit(main())
