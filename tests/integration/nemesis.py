"""Nemesis schedules: faults injected into a real cluster while the workload
of :mod:`raftkv.chaos.workload` records a history, then the history checked
for linearizability.

Theory of operation
-------------------
:func:`run_nemesis` forms a cluster (nodes started with
``RAFT_FAULT_INJECTION=true``), starts K clients, and runs one named
schedule until its time is up. A schedule repeats *cycles*: inject a fault,
wait (bounded) until the cluster shows the fault took hold (a new leader
elsewhere, say), *hold* it until the clients got a few more operations
through or a hold time passed, heal, and *settle*: wait until one leader
leads and every running member has applied its commit index. Every wait is
on a condition with a generous deadline; nothing sleeps blindly. Timed
faults (flapping partitions, delays) are POSTed with ``duration_s`` and the
schedule waits for the node to report them expired.

Each fault's window (inject to heal) is recorded next to the history. The
result holds the verdict, the history path (replay with
``python -m raftkv.chaos.checker PATH``), counts per outcome and, per fault
kind, the longest stretch with no successful operation.

Run longer from the command line (``scripts/chaos.sh``)::

    python tests/integration/nemesis.py --nemesis partition --minutes 5 --out test-artifacts/chaos
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster import Cluster, Node, wait_until  # noqa: E402

from raftkv.chaos.checker import Verdict, check  # noqa: E402
from raftkv.chaos.history import FAIL, OK, UNKNOWN, FaultWindow, save_history, unavailability  # noqa: E402
from raftkv.chaos.report import report  # noqa: E402
from raftkv.chaos.workload import Workload  # noqa: E402

NEMESIS_ENV = {
    "RAFT_FAULT_INJECTION": "true",
    "RAFT_APPLY_TIMEOUT": "2s",
    "LOG_LEVEL": "INFO",
}

SCHEDULES: dict[str, Callable[["Run"], None]] = {}


class Skip(Exception):
    """The schedule cannot run on this build (the reason says why)."""


def schedule(name: str):
    def register(fn):
        SCHEDULES[name] = fn
        return fn
    return register


@dataclass
class Result:
    name: str
    seed: int
    verdict: Verdict
    history: Path
    counts: dict[str, int]
    unavailable: dict[str, float]
    faults: list[FaultWindow]
    unexpected: list = field(default_factory=list)
    duration: float = 0.0
    ok_writes: int = 0
    ok_reads: int = 0

    def summary(self) -> str:
        worst = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(self.unavailable.items())) or "none"
        return (f"nemesis={self.name} seed={self.seed} verdict={self.verdict.ok} "
                f"ops={sum(self.counts.values())} {self.counts} faults={len(self.faults)} "
                f"longest-unavailable: {worst} history={self.history}")


class Run:
    """What a schedule works with: the cluster, the workload, a seeded RNG
    and the clock; it records the fault windows."""

    def __init__(self, cluster: Cluster, workload: Workload, rng: random.Random, deadline: float,
                 hold: float = 3.0) -> None:
        self.cluster = cluster
        self.workload = workload
        self.rng = rng
        self.deadline = deadline
        self.hold_s = hold
        self.faults: list[FaultWindow] = []
        self.members: list[str] = list(cluster.nodes)
        self.next_id = len(cluster.nodes) + 1
        self.installs = 0  # snapshots installed on a follower by the snapshot schedule

    # -- helpers for schedules

    def more(self) -> bool:
        return time.monotonic() < self.deadline

    def node(self, node_id: str) -> Node:
        return self.cluster[node_id]

    def member_nodes(self) -> list[Node]:
        return [self.cluster[i] for i in self.members]

    @contextlib.contextmanager
    def window(self, name: str, **detail):
        w = FaultWindow(name, self.workload.now(), None, detail)
        self.faults.append(w)
        print(f"[{w.start:7.2f}] nemesis: {name} {detail}", flush=True)
        try:
            yield w
        finally:
            w.end = self.workload.now()
            print(f"[{w.end:7.2f}] nemesis: healed {name}", flush=True)

    def leader(self, exclude: tuple[str, ...] = (), timeout: float = 30.0) -> Node:
        return self.cluster.leader(timeout=timeout, exclude=exclude)

    def hold(self, since: float, ops: int = 20) -> None:
        """Keep the fault while the clients get ``ops`` more operations
        through, for at most the hold time."""
        self.workload.wait_ok(ops, since, self.hold_s)

    def partition(self, side_a: list[str], side_b: list[str], duration_s: float | None = None) -> None:
        spec: dict = {}
        if duration_s is not None:
            spec["duration_s"] = duration_s
        for a in side_a:
            self.node(a).inject(drop=list(side_b), **spec)
        for b in side_b:
            self.node(b).inject(drop=list(side_a), **spec)

    def heal_all(self) -> None:
        for n in self.member_nodes():
            if n.running and not n.paused:
                n.heal()

    def wait_faults_expired(self, nodes: list[Node], timeout: float = 30.0) -> None:
        for n in nodes:
            wait_until(lambda: not n.request("GET", "/debug/faults", timeout=5).json()["rules"], timeout,
                       what=f"faults on {n.id} to expire")

    def settle(self, timeout: float = 40.0) -> Node:
        """One leader, and every running member has applied its commit index."""
        leader = self.leader(timeout=timeout)
        commit = leader.status()["commit_index"]
        for n in self.member_nodes():
            if n.running and not n.paused:
                wait_until(lambda: n.status()["applied_index"] >= commit, timeout,
                           what=f"{n.id} to apply index {commit}")
        return leader


# --- the schedules -------------------------------------------------------------

def _fault_one_node(run: Run, name: str, pick, apply, undo) -> None:
    """The shape of the single-node faults: pick a node, fault it, wait for
    a leader elsewhere and for the workload to go on, then undo the fault."""
    while run.more():
        node = pick()
        with run.window(name, node=node.id):
            apply(node)
            run.leader(exclude=(node.id,))
            run.hold(run.workload.now())
            undo(node)
        run.settle()


@schedule("kill-leader")
def kill_leader(run: Run) -> None:
    _fault_one_node(run, "kill-leader", run.leader, lambda n: n.kill(), lambda n: n.start().wait_ready())


@schedule("kill-random")
def kill_random(run: Run) -> None:
    _fault_one_node(run, "kill-random", lambda: run.node(run.rng.choice(run.members)),
                    lambda n: n.kill(), lambda n: n.start().wait_ready())


@schedule("pause-leader")
def pause_leader(run: Run) -> None:
    _fault_one_node(run, "pause-leader", run.leader, lambda n: n.pause(), lambda n: n.resume())


@schedule("isolate-leader")
def isolate_leader(run: Run) -> None:
    # the dashboard's "isolate" request: drop traffic to every other member
    _fault_one_node(run, "isolate-leader", run.leader,
                    lambda n: n.inject(drop=[i for i in run.members if i != n.id]), lambda n: n.heal())


@schedule("partition")
def partition(run: Run) -> None:
    """Majority/minority partitions of random shape."""
    while run.more():
        ids = list(run.members)
        run.rng.shuffle(ids)
        minority, majority = ids[:len(ids) // 2], ids[len(ids) // 2:]
        with run.window("partition", minority=minority, majority=majority):
            run.partition(minority, majority)
            run.leader(exclude=tuple(minority))
            run.hold(run.workload.now())
            run.heal_all()
        run.settle()


@schedule("flapping")
def flapping(run: Run) -> None:
    """Short random partitions, one after another, each healing itself."""
    while run.more():
        ids = list(run.members)
        run.rng.shuffle(ids)
        cut = run.rng.randrange(1, len(ids))
        a, b = ids[:cut], ids[cut:]
        length = round(run.rng.uniform(0.3, 1.5), 2)
        with run.window("flapping", a=a, b=b, seconds=length):
            run.partition(a, b, duration_s=length)
            run.wait_faults_expired(run.member_nodes())
        # healthy for a moment: a random number of successful ops (bounded)
        run.workload.wait_ok(run.rng.randrange(5, 40), run.workload.now(), 2.0)
        if run.rng.random() < 0.3:
            run.settle()


@schedule("delay")
def delay(run: Run) -> None:
    """The leader's traffic delayed (the dashboard's delay request)."""
    while run.more():
        old = run.leader()
        ms = run.rng.choice([50, 150, 400])
        others = [i for i in run.members if i != old.id]
        with run.window("delay", node=old.id, delay_ms=ms):
            old.inject(delay_ms=ms, peers=others, duration_s=3)
            run.wait_faults_expired([old])
        run.settle()


@schedule("membership")
def membership(run: Run) -> None:
    """Under load: add a node, wait until autopilot makes it a voter, then
    remove a random old member (the leader too, sometimes) and stop it."""
    while run.more():
        leader = run.leader()
        new_id = f"n{run.next_id}"
        run.next_id += 1
        with run.window("membership", add=new_id):
            node = run.cluster.add(new_id).wait_ready()
            resp = leader.get("/join", nodeId=new_id, raftPort=str(node.raft_port))
            assert resp.status == 200, resp
            run.members.append(new_id)
            run.cluster.wait_voters(list(run.members), timeout=40)
        run.settle()
        victim_id = run.rng.choice([i for i in run.members if i != new_id])
        with run.window("membership", remove=victim_id):
            def removed():
                leader = run.leader()
                resp = leader.post("/remove-peer", nodeId=victim_id)
                if resp.status == 404:
                    return True  # already gone (a retry after a lost answer)
                return resp.status == 200
            wait_until(removed, 40, interval=0.2, what=f"{victim_id} to be removed")
            run.members.remove(victim_id)
            wait_until(lambda: victim_id not in {s["id"] for s in run.leader(
                exclude=(victim_id,)).status()["latest_configuration"]}, 30, what="the removal to commit")
            run.node(victim_id).stop()
        run.settle()


@schedule("snapshot")
def snapshot(run: Run) -> None:
    """Snapshots under load: the leader and a follower snapshot; a follower
    that was down while the leader compacted its log catches up by
    InstallSnapshot."""
    cycle = 0
    while run.more():
        cycle += 1
        leader = run.leader()
        resp = leader.post("/snapshot")
        if resp.status == 404:
            raise Skip("POST /snapshot is not available on this build (404)")
        assert resp.status in (200, 409), resp  # 409: nothing new to snapshot
        follower = run.node(run.rng.choice([i for i in run.members if i != leader.id]))
        if cycle % 2:
            with run.window("snapshot", node=follower.id, kind="follower-snapshot"):
                resp = follower.post("/snapshot")
                assert resp.status in (200, 409), resp
        else:
            with run.window("snapshot", node=follower.id, kind="install-snapshot"):
                behind = follower.status()["last_log_index"]
                follower.kill()
                # enough new writes that the leader's compacted log no longer
                # reaches back to the follower's (RAFT_TRAILING_LOGS=20)
                run.workload.wait_ok(60, run.workload.now(), 20, writes_only=True)
                leader = run.leader(exclude=(follower.id,))
                resp = leader.post("/snapshot")
                assert resp.status in (200, 409), resp
                st = leader.status()
                must_install = st["last_snapshot_index"] - TRAILING_LOGS > behind
                follower.start().wait_ready()
                if must_install:
                    snap = st["last_snapshot_index"]
                    wait_until(lambda: follower.status()["last_snapshot_index"] >= snap, 40,
                               what=f"{follower.id} to install the leader's snapshot at {snap}")
                    run.installs += 1
        run.settle()


@schedule("mixed")
def mixed(run: Run) -> None:
    """Every other schedule in turn, in a seeded order, about 30 s each: the
    long chaos run (scripts/chaos.sh --nemesis mixed --minutes 30)."""
    names = sorted(n for n in SCHEDULES if n != "mixed")
    end = run.deadline
    try:
        while time.monotonic() < end:
            name = run.rng.choice(names)
            print(f"[{run.workload.now():7.2f}] nemesis: mixed -> {name}", flush=True)
            run.deadline = min(end, time.monotonic() + 30)
            try:
                SCHEDULES[name](run)
            except Skip as exc:
                print(f"nemesis: mixed skips {name}: {exc}", flush=True)
    finally:
        run.deadline = end


# --- running one ------------------------------------------------------------------

TRAILING_LOGS = 20
SNAPSHOT_ENV = {"RAFT_TRAILING_LOGS": str(TRAILING_LOGS), "RAFT_SNAPSHOT_THRESHOLD": "100000"}


def run_nemesis(root: Path, name: str, duration: float, seed: int | None = None, nodes: int = 3,
                clients: int = 5, keys: int = 4, command: list[str] | None = None,
                out: Path | None = None, check_limit: float = 120.0, hold: float = 3.0,
                max_ops: int = 20000, read_level: str | None = None, node_env: dict | None = None) -> Result:
    if name not in SCHEDULES:
        raise ValueError(f"unknown nemesis {name!r}; choose from {', '.join(sorted(SCHEDULES))}")
    seed = random.randrange(2**31) if seed is None else seed
    print(f"nemesis {name}: seed={seed} (replay with RAFTKV_NEMESIS_SEED={seed})", flush=True)
    rng = random.Random(seed)
    env = dict(NEMESIS_ENV)
    if name in ("snapshot", "mixed"):
        env.update(SNAPSHOT_ENV)
    env.update(node_env or {})
    cluster = Cluster(root, env=env, command=command)
    workload = None
    run = None
    started = time.monotonic()
    try:
        cluster.form(nodes)
        run_ref: list[Run] = []
        workload = Workload(lambda: [(i, cluster[i].http_addr) for i in run_ref[0].members],
                            clients=clients, keys=keys, seed=seed, max_ops=max_ops,
                            duration=duration + 120, key_prefix=f"{name}-", read_level=read_level)
        run = Run(cluster, workload, rng, time.monotonic() + duration, hold=hold)
        run_ref.append(run)
        workload.start()
        # some quiet operations first, so the history opens healthy
        workload.wait_ok(10, 0.0, 15)
        SCHEDULES[name](run)
        run.heal_all()
        run.settle()
        workload.wait_ok(10, workload.now(), 15)
    except BaseException:
        if workload is not None and run is not None:
            # keep what was recorded, so the failing run can be looked at
            workload.stop()
            path = save_history(Path(out or root) / f"history-{name}-{seed}-aborted.jsonl",
                                workload.history(), run.faults, meta={"nemesis": name, "seed": seed})
            print(f"nemesis {name} aborted (seed {seed}); history so far: {path}; node logs: {root}",
                  flush=True)
        raise
    finally:
        if workload is not None:
            workload.stop()
        cluster.close()
    ops = workload.history()
    end = workload.now()
    verdict = check(ops, time_limit=check_limit)
    out = out or root
    path = save_history(Path(out) / f"history-{name}-{seed}.jsonl", ops, run.faults,
                        meta={"nemesis": name, "seed": seed, "nodes": nodes, "clients": clients,
                              "verdict": verdict.ok, "end": end})
    counts = {k: sum(1 for op in ops if op.outcome == k) for k in (OK, FAIL, UNKNOWN)}
    result = Result(name, seed, verdict, path, counts, unavailability(ops, run.faults, end), run.faults,
                    list(workload.unexpected), time.monotonic() - started,
                    sum(1 for op in ops if op.outcome == OK and op.is_write),
                    sum(1 for op in ops if op.outcome == OK and not op.is_write))
    print(result.summary(), flush=True)
    if verdict.ok is not True:
        print(verdict.explain(), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run a nemesis against a real raftkv cluster")
    p.add_argument("--nemesis", default="partition", help=", ".join(sorted(SCHEDULES)))
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--out", default="test-artifacts/chaos")
    p.add_argument("--png", action="store_true", help="also draw the timeline PNG")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"chaos-{args.nemesis}-", dir=out))
    try:
        result = run_nemesis(root, args.nemesis, args.minutes * 60, args.seed, args.nodes, args.clients,
                             args.keys, out=out, check_limit=max(300.0, args.minutes * 120),
                             max_ops=1_000_000)
    except Skip as exc:
        print(f"skipped: {exc}")
        return 0
    return report(result, root, args.png)


if __name__ == "__main__":
    raise SystemExit(main())
