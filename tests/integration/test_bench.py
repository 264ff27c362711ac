"""``raftkv bench`` against a live 3-node cluster: it prints the figures,
``--json`` parses, the operations it reports really happened, and failed
requests are counted as errors rather than as results. No timing is
asserted: these runs only check what the tool reports."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cluster import REPO

pytestmark = pytest.mark.integration


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftkv", "bench", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO))


def test_bench_writes_reads_and_counts_errors(cluster):
    leader = cluster.form(3)
    follower = cluster["n2"]

    # writes through the leader and a follower (forwarded), as JSON
    run = bench("--addr", f"{leader.http_addr},{follower.http_addr}", "-c", "4", "-n", "120",
                "--prefix", "w", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ops"] == 120 and result["errors"] == 0, result
    assert result["by_op"]["set"]["ops"] == 120
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    assert result["ops_per_s"] > 0 and result["client_cpu_percent"] >= 0
    # unique keys: client 0 wrote w-0-1 through the leader; it is there on every node
    cluster.wait_applied(leader.status()["commit_index"])
    assert follower.value("w-0-1", stale=True) == "v" * 64

    # a mixed run over a prefilled key space, in the text form
    run = bench("--addr", leader.http_addr, "-c", "3", "-n", "90", "--keys", "20", "--prefill",
                "--mix", "set=1,get=1,stale=1", "-s", "16", "--seed", "7")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"^ops=90 errors=0 ops/s=[0-9.]+$", out, re.M), out
    assert re.search(r"^latency ms: p50=[0-9.]+ p90=[0-9.]+ p99=[0-9.]+ max=[0-9.]+", out, re.M), out
    for op in ("set", "get", "stale"):
        assert re.search(rf"^  {op}\s+ops=\d+ ops/s=", out, re.M), out
    assert re.search(r"^client cpu: [0-9.]+s", out, re.M), out
    assert leader.value("bench-19") == "v" * 16

    # reads of keys nobody wrote: every one is a 404, counted as an error
    run = bench("--addr", leader.http_addr, "-c", "2", "-n", "10", "--keys", "1000000",
                "--prefix", "absent", "--mix", "get=1", "--json")
    result = json.loads(run.stdout)
    assert run.returncode == 1  # nothing succeeded
    assert result["ops"] == 0 and result["errors"] == 10, result
    assert result["error_kinds"] == {"HTTP 404": 10}


def test_bench_progress_procs_and_unreachable(cluster):
    leader = cluster.form(3)

    # a timed run over two worker processes: progress on stderr, figures on stdout
    run = bench("--addr", leader.http_addr, "-c", "4", "--procs", "2", "-d", "2.5", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["procs"] == 2 and result["clients"] == 4
    assert result["ops"] > 0 and result["errors"] == 0, result
    assert re.search(r"\[\s*[0-9.]+s\] ops=\d+ errors=0 ops/s=\d+", run.stderr), run.stderr

    # the aiohttp client gives the same figures; --pump writes keys 1..N = N
    run = bench("--addr", leader.http_addr, "-c", "3", "-n", "30", "--http", "aiohttp", "--pump", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["http"] == "aiohttp" and result["ops"] == 30 and result["errors"] == 0, result
    assert leader.value("30") == "30" and leader.value("1") == "1"

    # nothing listening: every attempt is a transport error, counted
    from cluster import free_port
    run = bench("--addr", f"127.0.0.1:{free_port()}", "-c", "2", "-n", "6", "--json", "-q")
    result = json.loads(run.stdout)
    assert run.returncode == 1 and result["ops"] == 0 and result["errors"] == 6, result
    assert sum(result["error_kinds"].values()) == 6

    # bad arguments are a usage error
    assert bench("--mix", "nope=1").returncode == 2
    assert bench("--prefill").returncode == 2
