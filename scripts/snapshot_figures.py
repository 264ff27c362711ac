#!/usr/bin/env python3
"""Snapshot figures for a large store: load N keys (default 1,000,000 of 100
bytes) into a one-node cluster, then measure

* the time to take a snapshot (POST /snapshot), its file size, and the peak
  RSS of the node while it is written;
* the restart time: process start until the node serves with its state
  restored, and until it leads again (one election timeout later);
* the time for a new node to join and catch up (by InstallSnapshot);
* the RSS of each node once loaded.

    .venv/bin/python scripts/snapshot_figures.py [--keys N] [--value-bytes B]

It uses the real-process helpers of the integration tests; the nodes run
with default settings in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Cluster, wait_until  # noqa: E402

BATCH = 5000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self.done.wait(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    value = "v" * args.value_bytes
    env = {"RAFT_SNAPSHOT_THRESHOLD": str(10 ** 9), "LOG_LEVEL": "INFO",
           "RAFT_HEARTBEAT_TIMEOUT": "1s", "RAFT_ELECTION_TIMEOUT": "1s", "RAFT_LEADER_LEASE_TIMEOUT": "500ms",
           "RAFT_APPLY_TIMEOUT": "60s"}
    out: dict = {"keys": args.keys, "value_bytes": args.value_bytes}
    with tempfile.TemporaryDirectory(prefix="raftkv-snapfig-") as root:
        cluster = Cluster(Path(root), env=env)
        try:
            n1 = cluster.add("n1", bootstrap=True).wait_ready()
            wait_until(n1.is_leader, 30, what="n1 to lead")
            t0 = time.monotonic()
            for start in range(0, args.keys, BATCH):
                body = {f"key{i:08d}": value for i in range(start, min(start + BATCH, args.keys))}
                resp = n1.request("POST", "/key", json_body=body, timeout=120)
                assert resp.status == 200, resp
            out["load_s"] = round(time.monotonic() - t0, 1)
            out["rss_loaded_mb"] = round(rss_mb(n1.proc.pid), 1)

            peak = PeakRss(n1.proc.pid)
            peak.start()
            t0 = time.monotonic()
            resp = n1.request("POST", "/snapshot", timeout=600)
            out["snapshot_s"] = round(time.monotonic() - t0, 2)
            peak.done.set()
            peak.join()
            assert resp.status == 200, resp
            out["snapshot_bytes"] = resp.json()["size"]
            out["rss_peak_during_snapshot_mb"] = round(peak.peak, 1)

            n1.stop(timeout=120)
            t0 = time.monotonic()
            n1.start().wait_ready(timeout=600)  # serves HTTP once the snapshot is restored
            out["restart_serving_s"] = round(time.monotonic() - t0, 2)
            commit = n1.status()["commit_index"]
            wait_until(lambda: n1.is_leader() and n1.status()["applied_index"] >= commit, 600,
                       what="n1 to restore")
            out["restart_leader_s"] = round(time.monotonic() - t0, 2)
            out["rss_restarted_mb"] = round(rss_mb(n1.proc.pid), 1)

            n2 = cluster.add("n2").wait_ready()
            t0 = time.monotonic()
            assert n1.get("/join", nodeId="n2", raftPort=str(n2.raft_port)).status == 200
            commit = n1.status()["commit_index"]
            wait_until(lambda: n2.status()["applied_index"] >= commit, 600, interval=0.05,
                       what="n2 to catch up")
            out["new_node_catch_up_s"] = round(time.monotonic() - t0, 2)
            out["rss_new_node_mb"] = round(rss_mb(n2.proc.pid), 1)
            assert n2.value(f"key{args.keys - 1:08d}", stale=True) == value
        finally:
            cluster.close()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
