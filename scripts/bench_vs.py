"""Side-by-side benchmark of two 3-node clusters with wrk as the client.

    scripts/bench-vs.sh                       raftkv (this tree) against hraftd ($RAFTKV_HRAFTD or $HRAFTD_BIN)
    scripts/bench-vs.sh --baseline REV        raftkv (this tree) against raftkv at git revision REV
    options: --runs 3 --duration 5 --cases set1,set8,set64,set256,get64,stale64
             --keys N  load N more keys (100-byte values) into both clusters first, in
             batches through POST /key, which both serve (e.g. --keys 1000000)
             --client raftkv   load with `raftkv bench` instead of wrk (raftkv clusters only)
             --env NAME=VALUE (settings of this tree's nodes, e.g. --env HTTP_WORKERS=2;
             repeatable) --baseline-env NAME=VALUE (the same for the baseline's nodes)

Both clusters run at once on loopback, fsync on; each case runs on one
cluster then the other, alternating, ``--runs`` times; every run is printed,
then a table of medians with the ratio this/other, and each node's resident
memory (its HTTP workers included) and the snapshots it took. Writes use
unique keys and 64-byte values; reads go to 1,000 prefilled keys. hraftd
only has local reads, so both read cases compare against them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from raftkv.observability.procstat import process_stats

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = ROOT / "scripts" / "wrk"
CASES = {  # name: (lua script, connections, env)
    "set1": ("set.lua", 1, {}), "set8": ("set.lua", 8, {}), "set64": ("set.lua", 64, {}),
    "set256": ("set.lua", 256, {}), "get64": ("get.lua", 64, {}), "stale64": ("get.lua", 64, {"STALE": "1"}),
    "lease64": ("get.lua", 64, {"LEVEL": "lease"}),
    # "...x3": the connections spread over the three nodes, one wrk each
    "get64x3": ("get.lua", 64, {}), "lease64x3": ("get.lua", 64, {"LEVEL": "lease"}),
}


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, name: str, base: int, workdir: Path) -> None:
        self.name, self.base, self.dir = name, base, workdir / name.split()[0].replace("/", "_")
        self.dir.mkdir(parents=True)
        self.procs: list[subprocess.Popen] = []

    @property
    def leader(self) -> str:
        return f"127.0.0.1:{self.base}"

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def load(self, keys: int, batch: int = 1000, parallel: int = 64) -> None:
        """``keys`` keys ``k<N>`` with 100-byte values, ``batch`` per POST /key
        and ``parallel`` POSTs at a time (hraftd applies a POSTed map one key
        at a time, so only concurrent POSTs share its commits)."""
        value = "x" * 100

        def post(start: int) -> None:
            body = json.dumps({f"k{n}": value for n in range(start, min(start + batch, keys))}).encode()
            status, answer = http("POST", f"http://{self.leader}/key", body, timeout=300)
            if status != 200:
                raise SystemExit(f"{self.name}: loading keys failed at {start}: {status} {answer[:200]!r}")
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(post, range(0, keys, batch)))  # re-raises the first failure

    def rss_mb(self) -> list[float]:
        """Each node's resident memory in MB, its child processes included."""
        out = []
        for pid in self.pids():
            rows = (process_stats("node", p) for p in with_children([pid]))
            out.append(sum(row["rss_bytes"] for row in rows if row is not None) / 2**20)
        return out

    def snapshots(self) -> list[int]:
        """How many snapshots each node's log says it took."""
        counts = []
        for log in sorted(self.dir.glob("*.log")):
            text = log.read_text(errors="replace")
            counts.append(text.count("snapshot complete up to"))  # hashicorp/raft's words, and raftkv's
        return counts

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


class Raftkv(Cluster):
    def __init__(self, name: str, base: int, workdir: Path, tree: Path, settings: dict[str, str]) -> None:
        super().__init__(name, base, workdir)
        self.tree = tree
        self.settings = settings

    def start(self) -> None:
        python = str(ROOT / ".venv" / "bin" / "python")
        for i in range(3):
            env = dict(os.environ, PYTHONPATH=str(self.tree), RAFT_NODE_ID=f"n{i + 1}",
                       HTTP_SERVER_PORT=str(self.base + i), RAFT_SERVER_PORT=str(self.base + 100 + i),
                       RAFT_VOLUME_DIR=str(self.dir / f"n{i + 1}"), RAFT_BOOTSTRAP="true" if i == 0 else "false",
                       RAFT_SERVER_STABILIZATION_TIME="1s", LOG_LEVEL="INFO", **self.settings)
            log = open(self.dir / f"n{i + 1}.log", "w")
            self.procs.append(subprocess.Popen([python, "-m", "raftkv", "serve"], env=env, stdout=log,
                                               stderr=subprocess.STDOUT, cwd=self.tree))
        lead = f"http://{self.leader}"
        wait("the raftkv leader", lambda: b'"Leader"' in http("GET", lead + "/status")[1])
        for i in (1, 2):
            wait("a join", lambda: http("GET", f"{lead}/join?nodeId=n{i + 1}&raftPort={self.base + 100 + i}")[0] == 200)
        wait("three raftkv voters", lambda: http("GET", lead + "/status")[1].count(b'"Voter"') == 3)
        wait("three HTTP addresses", lambda: http("GET", lead + "/peers")[1].count(b'"http": "') == 3)

    def prefill(self) -> None:
        for k in range(1, 1001):
            status, _ = http("GET", f"http://{self.leader}/set?key=r{k}&value={'v' * 64}")
            assert status == 200, status

    env: dict = {}


class Hraftd(Cluster):
    env = {"HRAFTD": "1"}

    def __init__(self, name: str, base: int, workdir: Path, binary: str) -> None:
        super().__init__(name, base, workdir)
        self.binary = binary

    def start(self) -> None:
        for i in range(3):
            args = [self.binary, "-id", f"node{i}", "-haddr", f"127.0.0.1:{self.base + i}",
                    "-raddr", f"127.0.0.1:{self.base + 100 + i}"]
            if i:
                args += ["-join", self.leader]
            log = open(self.dir / f"node{i}.log", "w")
            self.procs.append(subprocess.Popen(args + [str(self.dir / f"node{i}")], stdout=log,
                                               stderr=subprocess.STDOUT))
            if i == 0:
                wait("hraftd's leader", lambda: http("POST", f"http://{self.leader}/key", b'{"x":"y"}')[0] == 200)
        wait("hraftd's followers", lambda: all(http("GET", f"http://127.0.0.1:{self.base + i}/key/x")[1] == b'{"x":"y"}'
                                               for i in (1, 2)), timeout=60)

    def prefill(self) -> None:
        body = json.dumps({f"r{k}": "v" * 64 for k in range(1, 1001)}).encode()
        status, _ = http("POST", f"http://{self.leader}/key", body)
        assert status == 200, status


def with_children(pids: list[int]) -> list[int]:
    """The nodes' pids and their children's (a node's HTTP workers)."""
    out = list(pids)
    for pid in pids:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in with_children(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def run_wrk(cluster: Cluster, case: str, duration: int) -> dict:
    script, conns, env = CASES[case]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write((WRK_DIR / script).read_text() + "\n" + (WRK_DIR / "report.lua").read_text())
    targets = ([f"127.0.0.1:{cluster.base + i}" for i in range(3)] if case.endswith("x3")
               else [cluster.leader])
    cpu0 = cpu_seconds(cluster.pids())
    procs = [subprocess.Popen(["wrk", "-t1", f"-c{max(1, conns // len(targets))}", f"-d{duration}s", "--timeout",
                               "10s", "-s", f.name, f"http://{target}"],
                              env=dict(os.environ, **cluster.env, **env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for target in targets]
    outs = [p.communicate() for p in procs]
    cpu = cpu_seconds(cluster.pids()) - cpu0
    os.unlink(f.name)
    results = []
    for stdout, stderr in outs:
        line = next((l for l in stdout.splitlines() if l.startswith("WRK ")), None)
        if line is None:
            raise SystemExit(f"wrk failed: {stdout}\n{stderr}")
        results.append({k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])})
    # one wrk per node: the throughputs add up; the latencies are the worst node's
    result = {"ops": sum(r["ops"] for r in results), "p50": max(r["p50"] for r in results),
              "p99": max(r["p99"] for r in results), "errors": sum(r["errors"] for r in results),
              "requests": sum(r["requests"] for r in results)}
    result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
    return result


BENCH_ARGS = {  # the same cases for `raftkv bench` (its own keys: bench-N, prefilled for reads)
    "set1": ["-c", "1"], "set8": ["-c", "8"], "set64": ["-c", "64"], "set256": ["-c", "256"],
    "get64": ["-c", "64", "-k", "1000", "--mix", "get=1"], "stale64": ["-c", "64", "-k", "1000", "--mix", "stale=1"],
}  # (the lease and spread cases are wrk's only)


def run_raftkv_bench(cluster: Cluster, case: str, duration: int) -> dict:
    if case not in BENCH_ARGS:
        raise SystemExit(f"case {case} runs with wrk only (--client wrk)")
    args = [str(ROOT / ".venv" / "bin" / "raftkv"), "bench", "--addr", f"http://{cluster.leader}", "-d",
            str(duration), "-q", "--json", *BENCH_ARGS[case]]
    if "-k" in BENCH_ARGS[case]:
        args.append("--prefill")
    cpu0 = cpu_seconds(cluster.pids())
    out = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    cpu = cpu_seconds(cluster.pids()) - cpu0
    if out.returncode != 0:
        raise SystemExit(f"raftkv bench failed: {out.stdout}\n{out.stderr}")
    r = json.loads(out.stdout)
    lat = r["latency_ms"]
    return {"ops": r["ops_per_s"], "p50": lat["p50"], "p99": lat["p99"], "errors": r["errors"],
            "requests": r["ops"], "cpu_us": cpu / max(r["ops"], 1) * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="compare with raftkv at this git revision instead of hraftd")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--client", choices=("wrk", "raftkv"), default="wrk")
    ap.add_argument("--keys", type=int, default=0, help="load this many more keys into both clusters first")
    ap.add_argument("--port-base", type=int, default=18100,
                    help="HTTP ports base..base+2 and base+200..; Raft ports 100 above each")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for this tree's nodes (repeatable), e.g. HTTP_WORKERS=2")
    ap.add_argument("--baseline-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the baseline's nodes (repeatable)")
    args = ap.parse_args()
    settings = dict(pair.split("=", 1) for pair in args.env)
    baseline_settings = dict(pair.split("=", 1) for pair in args.baseline_env)
    if args.client == "raftkv" and not args.baseline:
        raise SystemExit("--client raftkv compares raftkv revisions: give --baseline REV")
    load = run_wrk if args.client == "wrk" else run_raftkv_bench
    if args.client == "wrk" and shutil.which("wrk") is None:
        print("installing wrk (Debian package) ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        if shutil.which("wrk") is None:
            raise SystemExit("wrk is not installed and could not be installed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="raftkv-bench-vs-"))
    label = "raftkv" + "".join(f" {k}={v}" for k, v in settings.items())
    this = Raftkv(label, args.port_base, workdir, ROOT, settings)
    if args.baseline:
        tree = workdir / "baseline-tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
                       check=True, capture_output=True)
        other: Cluster = Raftkv(f"raftkv@{args.baseline}" + "".join(f" {k}={v}" for k, v in baseline_settings.items()),
                                args.port_base + 200, workdir, tree, baseline_settings)
    else:
        binary = (os.environ.get("RAFTKV_HRAFTD") or os.environ.get("HRAFTD_BIN")
                  or str(ROOT.parent / "shared" / "anchors" / "hraftd" / "hraftd"))
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"hraftd not found at {binary}: set RAFTKV_HRAFTD to the hraftd binary "
                             "(or use --baseline REV to compare two raftkv revisions)")
        other = Hraftd("hraftd", args.port_base + 200, workdir, binary)
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for cluster in (this, other):
            cluster.start()
            cluster.prefill()
            if args.keys:
                t0 = time.monotonic()
                cluster.load(args.keys)
                print(f"{cluster.name}: loaded {args.keys:,} keys in {time.monotonic() - t0:.0f} s; RSS MB per node "
                      + ", ".join(f"{mb:.0f}" for mb in cluster.rss_mb()), flush=True)
        print(f"clusters ready; logs in {workdir}", flush=True)
        for case in args.cases.split(","):
            for run in range(args.runs):
                for cluster in ((this, other) if run % 2 == 0 else (other, this)):
                    r = load(cluster, case, args.duration)
                    results.setdefault((case, cluster.name), []).append(r)
                    print(f"{case:8} {cluster.name:28} run {run + 1}: {r['ops']:>8.0f} ops/s  p50 {r['p50']:6.2f} ms"
                          f"  p99 {r['p99']:7.2f} ms  errors {r['errors']:.0f}  cpu {r['cpu_us']:.0f} us/op",
                          flush=True)
        memory = {c.name: c.rss_mb() for c in (this, other)}
        snapshots = {c.name: c.snapshots() for c in (this, other)}
    finally:
        this.stop()
        other.stop()
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(workdir / "baseline-tree")],
                           capture_output=True)
    print()
    print(f"client: {args.client}; median of {args.runs} runs of {args.duration} s")
    print(f"| case | {this.name} ops/s (p50 / p99 ms) | {other.name} ops/s (p50 / p99 ms) | ratio |")
    print("|---|---|---|---|")
    for case in args.cases.split(","):
        cells = []
        medians = []
        for cluster in (this, other):
            runs = results[(case, cluster.name)]
            ops = statistics.median(r["ops"] for r in runs)
            medians.append(ops)
            cells.append(f"{ops:,.0f} ({statistics.median(r['p50'] for r in runs):.2f} / "
                         f"{statistics.median(r['p99'] for r in runs):.1f})")
        print(f"| {case} | {cells[0]} | {cells[1]} | {medians[0] / medians[1]:.2f} |")
    print()
    for name in (this.name, other.name):
        print(f"{name}: RSS MB per node at the end " + ", ".join(f"{mb:.0f}" for mb in memory[name])
              + "; snapshots taken per node " + ", ".join(str(n) for n in snapshots[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
