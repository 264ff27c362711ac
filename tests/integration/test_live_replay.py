"""Live runs replayed through the core: three nodes record every step
(RAFT_TRACE), the cluster takes writes, dropped and delayed messages, a
snapshot, a kill -9 of the leader and its restart; then ``raftkv replay``
feeds each node's trace to a fresh core and must find no divergence."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from cluster import REPO, Writer, wait_until
from browser import WAIT_MS, needs_browser

pytestmark = pytest.mark.integration

TRACE = "raft.trace"  # relative: each node runs in its own directory


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftkv", "replay", *args], cwd=str(REPO),
                          capture_output=True, text=True, timeout=300)


def test_live_cluster_under_faults_replays_without_divergence(cluster):
    cluster.env.update({"RAFT_TRACE": TRACE, "RAFT_FAULT_INJECTION": "true",
                        # snapshots and a short trailing log, so a node that was
                        # down catches up by InstallSnapshot
                        "RAFT_SNAPSHOT_THRESHOLD": "40", "RAFT_SNAPSHOT_INTERVAL": "500ms",
                        "RAFT_TRAILING_LOGS": "5"})
    n1 = cluster.form(3)
    for i in range(30):
        n1.set(f"before{i}", str(i))

    # lossy, slow links from the leader for a while
    n1.inject(drop=["n3"], duration_s=1)
    n1.inject(delay_ms=30, peers=["n2"], duration_s=1)
    writer = Writer(cluster["n2"], "during")
    writer.start()
    wait_until(lambda: len(writer.acked) >= 20, what="writes through a follower")

    assert n1.kill() == -9
    new = cluster.leader(timeout=10)
    wait_until(lambda: len(writer.acked) >= 80, what="writes after the failover")
    writer.stop_flag.set()
    writer.join(30)
    assert not writer.unexpected, writer.unexpected

    n1.start().wait_ready()
    commit = new.status()["commit_index"]
    wait_until(lambda: n1.status()["applied_index"] >= commit, timeout=20, what="n1 to catch up")
    new.set("after", "restart")
    cluster.wait_applied(new.status()["commit_index"])
    for node in cluster.nodes.values():
        assert node.stop() == 0

    files = [str(node.dir / TRACE) for node in cluster.nodes.values()]
    steps = {}
    for node, path in zip(cluster.nodes.values(), files):
        result = replay("--quiet", path)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        last = result.stdout.strip().splitlines()[-1]
        match = re.fullmatch(r"replayed (\d+) steps, 0 divergences \(1 files, (\d+) runs\)", last)
        assert match, result.stdout[-2000:]
        steps[node.id] = int(match.group(1))
        assert int(match.group(2)) == (2 if node.id == "n1" else 1)
    assert all(count > 50 for count in steps.values()), steps

    # all three merged, with the trace printed as the simulator prints it
    merged = replay(*files)
    assert merged.returncode == 0, merged.stdout[-4000:]
    out = merged.stdout
    assert out.strip().splitlines()[-1].startswith(f"replayed {sum(steps.values())} steps, 0 divergences")
    assert "----{n1 Start n1" in out and "raft: entering leader state" in out
    assert re.search(r"^  n\d append \d+(\.\.\d+)? \(fsync\)$", out, re.M), "the executor's lines"
    assert re.search(r"^  n\d apply \d+", out, re.M)
    assert "SnapshotTaken" in out
    installed = "Receive InstallSnapshot" in out

    # the dashboard's replay opens the same files (uploaded to a running node)
    kept = []
    for node, path in zip(cluster.nodes.values(), files):
        kept.append(node.dir / f"{node.id}.trace")
        shutil.copy(path, kept[-1])
    n2 = cluster["n2"].start().wait_ready()
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"trace\"; "
                    f"filename=\"{p.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
                    + p.read_bytes() + b"\r\n" for p in kept) + f"--{boundary}--\r\n".encode()
    resp = n2.request("POST", "/ui/replay", body=body,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=120)
    assert resp.status == 200, resp
    doc = resp.json()
    assert doc["passed"] and doc["nodes"] == ["n1", "n2", "n3"], doc.get("error")
    assert doc["scenario"] == "n1.trace n2.trace n3.trace"
    assert {c["node"]: c["steps"] for c in doc["replayed"].values()} == steps
    assert any(l["message"] == "entering leader state" for s in doc["steps"] for l in s["logs"])
    assert [s["t"] for s in doc["steps"]] == sorted(s["t"] for s in doc["steps"])
    json.dumps(doc)
    bad = n2.request("POST", "/ui/replay", body=b"\x00\x00\x00\x05hello", timeout=30)
    assert bad.status == 400, bad

    print(f"replayed {steps} steps (n1 in two runs), 0 divergences; "
          f"{'with' if installed else 'without'} an InstallSnapshot")


def _simulated_traces(tmp_path) -> list[str]:
    from raftkv.node.trace import TraceRecorder
    from raftkv.sim import scenarios
    paths: list[str] = []

    def attach(script):
        for node_id in script.cluster.nodes:
            paths.append(str(tmp_path / f"{node_id}.trace"))
            script.cluster.recorders[node_id] = TraceRecorder(paths[-1])
    scenarios.play(scenarios.scenario_path("leader-crash"), None, on_script=attach)
    return paths


@needs_browser
def test_dashboard_replay_opens_trace_files(cluster, browser_page, tmp_path):
    page = browser_page
    traces = _simulated_traces(tmp_path)
    node = cluster.add("n1", bootstrap=True).wait_ready()
    page.goto(f"http://{node.http_addr}/ui")
    page.click("#tab-replay")
    page.set_input_files("#replay-file", traces)
    page.wait_for_function("() => document.querySelector('#replay-pos').textContent.startsWith('step 1 /')",
                           timeout=WAIT_MS)
    assert "no divergence" in page.text_content("#op-result")
    total = int(page.text_content("#replay-pos").split("/")[1])
    assert total > 10
    page.eval_on_selector("#replay-slider", f"(e) => {{ e.value = '{total - 1}'; e.dispatchEvent(new Event('input')); }}")
    page.wait_for_function(f"() => document.querySelector('#replay-pos').textContent.startsWith('step {total} /')",
                           timeout=WAIT_MS)
    cards = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid=node-card]'))
                                     .map(e => [e.dataset.node, e.dataset.role])""")
    assert sorted(c[0] for c in cards) == ["n1", "n2", "n3"]
    assert [c for c in cards if c[1] == "Leader"], cards
    messages = page.eval_on_selector_all("#events tbody td.message", "els => els.map(e => e.textContent)")
    assert "election won" in messages
    assert not page.errors, page.errors
