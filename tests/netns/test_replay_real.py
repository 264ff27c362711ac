"""Live runs on the real network, recorded with RAFT_TRACE and replayed
through a fresh core with ``raftkv replay``: zero divergence, through a
leader cut off by routes, a follower's kill -9 and its restart."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit import ELECTION_BOUND, agreed_everywhere, one

pytestmark = pytest.mark.timeout(120)

TRACE = "raftkv.trace"  # relative: each node writes in its own directory


def test_live_run_under_faults_replays_without_divergence(make_cluster):
    c = make_cluster(3, env={"RAFT_TRACE": TRACE})
    c.form()
    for i in range(10):
        one(c, f"a{i}", str(i))
    old = c.leader()
    c.isolate(old.id)
    rest = [i for i in c.nodes if i != old.id]
    c.leader(timeout=ELECTION_BOUND, among=rest)
    for i in range(10):
        one(c, f"b{i}", str(i), ids=rest)
    c.heal_routes()
    follower = c.nodes[next(i for i in c.nodes if i != c.leader().id)]
    follower.kill()
    for i in range(5):
        one(c, f"c{i}", str(i))
    follower.start()
    agreed_everywhere(c, "c4", "4")
    for node in c.nodes.values():
        node.kill()  # a kill -9 leaves the trace as a crash would
    files = [str(node.dir / TRACE) for node in c.nodes.values()]
    out = subprocess.run([sys.executable, "-m", "raftkv", "replay", "-q", *files],
                         capture_output=True, text=True, timeout=60)
    print(out.stdout[-400:])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " 0 divergences" in out.stdout
