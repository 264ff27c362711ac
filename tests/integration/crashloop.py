"""Crash loop: kill -9 nodes of a 3-node cluster under a steady write load,
at random moments and at the moments that matter most (while a snapshot is
being written, while one is being installed), restart them from their
volumes, and check that nothing acknowledged was lost.

Theory of operation: two writer threads each own a small set of keys and
overwrite them in turn with increasing values, through whichever node is up.
Per key, a writer remembers the last acknowledged value and every value
written after it whose outcome is unknown (a timeout, a dropped connection,
a 503 that says the outcome is unknown). At the end, with the load stopped
and every node caught up, each key on each node must hold the last
acknowledged value or one of those later unknown ones. An older value means
an acknowledged write was lost or an old entry was applied again after a
newer one.

Snapshots are taken every 40 entries (and the log compacted to 10), so
restarts restore snapshots and lagging nodes are brought back by
InstallSnapshot all the time.

Run longer than CI does:  python tests/integration/crashloop.py --cycles 200
(or scripts/crashloop.sh --cycles 200).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster, Node, wait_until  # noqa: E402

SNAP_ENV = {"RAFT_SNAPSHOT_THRESHOLD": "40", "RAFT_SNAPSHOT_INTERVAL": "100ms",
            "RAFT_TRAILING_LOGS": "10", "LOG_LEVEL": "INFO"}
KINDS = ("random", "leader", "during-snapshot", "during-install")


class KeyWriter(threading.Thread):
    """Overwrites its keys in turn through any running node; see the module
    docstring for what it remembers."""

    def __init__(self, cluster: Cluster, name: str, keys: int, rng: random.Random) -> None:
        super().__init__(daemon=True, name=f"writer-{name}")
        self.cluster = cluster
        self.name_ = name
        self.keys = [f"{name}{i}" for i in range(keys)]
        self.rng = rng
        self.acked: dict[str, int] = {}             # key -> last acknowledged value
        self.unknown: dict[str, set[int]] = {}      # key -> values written after it, outcome unknown
        self.ok = self.failed = self.unknown_count = 0
        self.errors: list[str] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.stop_flag.is_set():
            nodes = self.cluster.running()
            if not nodes:
                self.stop_flag.wait(0.05)
                continue
            node = self.rng.choice(nodes)
            key = self.keys[seq % len(self.keys)]
            seq += 1
            outcome = self._write(node, key, seq)
            if outcome == "ok":
                self.ok += 1
                self.acked[key] = seq
                self.unknown.pop(key, None)
            elif outcome == "unknown":
                self.unknown_count += 1
                self.unknown.setdefault(key, set()).add(seq)
            else:
                self.failed += 1
                self.stop_flag.wait(0.02)  # nothing happened; let the election run

    def _write(self, node: Node, key: str, seq: int) -> str:
        try:
            resp = node.request("GET", "/set", {"key": key, "value": str(seq)}, timeout=10)
        except OSError as exc:
            if isinstance(getattr(exc, "reason", exc), ConnectionRefusedError):
                return "failed"  # never reached the node: nothing happened
            return "unknown"     # cut mid-request: it may have been applied
        if resp.status == 200:
            return "ok"
        if resp.status == 503:
            try:
                return "unknown" if resp.json().get("outcome_unknown") is not False else "failed"
            except ValueError:
                return "unknown"
        self.errors.append(f"{node.id}: unexpected {resp.status} {resp.body[:200]!r}")
        return "failed"

    def allowed(self, key: str) -> set[int | None]:
        values: set[int | None] = set(self.unknown.get(key, ()))
        values.add(self.acked.get(key))
        return values


def _log_count(node: Node, text: str) -> int:
    return node.log().count(text)


def _kill_during_snapshot(cluster: Cluster, rng: random.Random, say) -> Node:
    victim = rng.choice(cluster.running())
    before = _log_count(victim, "starting snapshot up to")
    wait_until(lambda: _log_count(victim, "starting snapshot up to") > before, timeout=30,
               interval=0.005, what=f"{victim.id} to start a snapshot")
    victim.kill()
    say(f"killed {victim.id} while it wrote a snapshot")
    return victim


def _kill_during_install(cluster: Cluster, rng: random.Random, say) -> Node:
    leader = cluster.leader(timeout=30)
    victim = rng.choice([n for n in cluster.running() if n is not leader])
    victim.kill()
    # let the leader compact past the victim, then bring it back: it needs a snapshot
    target = leader.status()["last_log_index"] + 60
    wait_until(lambda: leader.status()["last_snapshot_index"] >= target, timeout=30,
               what=f"{leader.id} to compact past {victim.id}")
    # whoever leads by then sends it (leadership may move under load)
    marker = f"installing snapshot on: peer={victim.id}"
    others = [n for n in cluster.nodes.values() if n is not victim]
    before = {n.id: _log_count(n, marker) for n in others}

    def sender() -> Node | None:
        return next((n for n in others if _log_count(n, marker) > before[n.id]), None)
    victim.start()
    source = wait_until(sender, timeout=30, interval=0.005, what=f"a snapshot to be sent to {victim.id}")
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0, 0.05))  # sometimes mid-stream, sometimes right at the start
    victim.kill()
    say(f"killed {victim.id} while it received a snapshot from {source.id}")
    return victim


def run(root: Path, cycles: int, seed: int, say=print) -> dict:
    """Run the crash loop; raise AssertionError on any lost write."""
    rng = random.Random(seed)
    say(f"crashloop: seed={seed} cycles={cycles} (replay with --seed {seed})")
    cluster = Cluster(root, env=SNAP_ENV)
    writers: list[KeyWriter] = []
    started = time.monotonic()
    try:
        cluster.form(3)
        writers = [KeyWriter(cluster, name, 25, random.Random(rng.random())) for name in ("a", "b")]
        for w in writers:
            w.start()
        wait_until(lambda: all(w.ok >= 10 for w in writers), timeout=30, what="the write load to start")
        for cycle in range(cycles):
            kind = KINDS[cycle % len(KINDS)] if cycle < len(KINDS) else rng.choice(KINDS)
            time.sleep(rng.uniform(0.05, 0.6))  # let the load run for a random while
            if kind == "random":
                victim = rng.choice(cluster.running())
                victim.kill()
                say(f"cycle {cycle}: killed {victim.id} at a random moment")
            elif kind == "leader":
                victim = cluster.leader(timeout=30)
                victim.kill()
                say(f"cycle {cycle}: killed the leader {victim.id}")
            elif kind == "during-snapshot":
                victim = _kill_during_snapshot(cluster, rng, lambda m: say(f"cycle {cycle}: {m}"))
            else:
                victim = _kill_during_install(cluster, rng, lambda m: say(f"cycle {cycle}: {m}"))
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 0.5))  # down for a while, or back at once
            victim.start().wait_ready(timeout=30)  # every node must start again
            done = sum(w.ok for w in writers)
            wait_until(lambda: sum(w.ok for w in writers) > done, timeout=30,
                       what="writes to go on after the restart")
        for w in writers:
            w.stop_flag.set()
        for w in writers:
            w.join(30)
        return _check(cluster, writers, time.monotonic() - started, say)
    finally:
        for w in writers:
            w.stop_flag.set()
        cluster.close()


def _check(cluster: Cluster, writers: list[KeyWriter], elapsed: float, say) -> dict:
    errors = [e for w in writers for e in w.errors]
    assert not errors, errors[:5]
    leader = cluster.leader(timeout=30)
    leader.set("crashloop-final", "done")  # commits everything before it in this term
    commit = leader.status()["commit_index"]
    cluster.wait_applied(commit, timeout=60)
    lost = []
    for node in cluster.running():
        for w in writers:
            for key in w.keys:
                value = node.value(key, stale=True)
                have = int(value) if value is not None else None
                if have not in w.allowed(key):
                    lost.append(f"{node.id} {key}={value}, acked {w.acked.get(key)}, "
                                f"unknown {sorted(w.unknown.get(key, ()))}")
    summary = {"nodes": len(cluster.running()), "acked": sum(w.ok for w in writers),
               "unknown": sum(w.unknown_count for w in writers),
               "refused": sum(w.failed for w in writers), "seconds": round(elapsed, 1)}
    say(f"crashloop: {summary}")
    assert not lost, "acknowledged writes lost or reverted:\n" + "\n".join(lost[:20])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--dir", help="keep the nodes' volumes and logs here")
    args = parser.parse_args(argv)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="raftkv-crashloop-"))
    print(f"volumes and logs under {root}")
    run(root, args.cycles, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
