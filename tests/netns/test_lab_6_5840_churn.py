"""The MIT 6.5840 Raft lab's churn tests, against live nodes on a real
network: ReliableChurn and UnreliableChurn.

Three clients write all along (each write its own key, to any running node:
followers forward to the leader) while servers are disconnected by routes,
reconnected, crashed with kill -9 and restarted, at random; the unreliable
one also has loss, delay, duplication and reordering on every link. Then
everything heals and restarts, one command commits within the lab's 10 s,
every acknowledged write is there on a linearizable read, and every node's
stale reads of all the keys written agree with the leader's: the nodes
converged on one state. The churn runs a bounded time here and longer with
``RAFTKV_NETNS_LONG=1``.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from raftkv.chaos.netnode import wait_until

from labkit import AGREE_BOUND, ELECTION_BOUND, LONG, one

pytestmark = pytest.mark.timeout(240 if LONG else 90)

CHURN_SECONDS = 60 if LONG else 8
CLIENTS = 3
CLIENT_PAUSE = 0.03  # keeps the key count, and so the final comparison, small
# A node without a leader holds a write it was sent for a few election
# timeouts (at least 3 s, raftkv/http/api/forward.py) and forwards it once one is
# known: a write whose client gave up can still land that long after.
FORWARD_WINDOW = 3.0 + 1.0


def disconnect(c, node_id, cut: set[str]) -> None:
    for other in c.nodes:
        if other != node_id:
            c.block_route(node_id, other)
            c.block_route(other, node_id)
    cut.add(node_id)
    c.note("fault", f"disconnect {node_id}")


def connect(c, node_id, cut: set[str]) -> None:
    """Back in touch with every node that is not itself disconnected."""
    cut.discard(node_id)
    for other in c.nodes:
        if other != node_id and other not in cut:
            c.unblock_route(node_id, other)
            c.unblock_route(other, node_id)
    c.note("heal", f"connect {node_id}")


def churn(c, seed: int, unreliable: bool) -> None:
    c.form()
    rng = random.Random(seed)
    acked: dict[str, str] = {}
    tried: set[str] = set()
    stop = threading.Event()

    def client(me: int) -> None:
        n = 0
        while not stop.is_set():
            up = c.running()
            if up:
                key, value = f"ch{me}-{n}", str(n)
                tried.add(key)
                if random.choice(up).set(key, value, timeout=1.0).status == 200:
                    acked[key] = value
                n += 1
            time.sleep(CLIENT_PAUSE)

    if unreliable:
        c.all_links(loss=0.1, delay_ms=5, jitter_ms=20, duplicate=0.05, reorder=0.05)
    cut: set[str] = set()
    ids = list(c.nodes)
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        clients = [pool.submit(client, me) for me in range(CLIENTS)]
        deadline = time.monotonic() + CHURN_SECONDS
        while time.monotonic() < deadline:
            # the lab's odds: disconnect 0.2, reconnect 0.5, crash 0.2, restart 0.5
            if rng.random() < 0.2:
                disconnect(c, rng.choice(ids), cut)
            if rng.random() < 0.5:
                node_id = rng.choice(ids)
                if node_id in cut:
                    connect(c, node_id, cut)
            if rng.random() < 0.2:
                node = c[rng.choice(ids)]
                if node.running:
                    node.kill()
            if rng.random() < 0.5:
                node = c[rng.choice(ids)]
                if not node.running:
                    node.start()  # ready when it is; the churn goes on meanwhile
            time.sleep(0.7 * 0.3)  # the lab: 7/10 of an election timeout
        stop.set()
        for f in clients:
            f.result()
    stopped = time.monotonic()
    c.heal()
    for node in c.nodes.values():
        if not node.running:
            node.start()
    for node in c.nodes.values():
        node.wait_ready()
    one(c, "final", "1", timeout=AGREE_BOUND)
    # only then is the state final: no write still held by a node can land
    time.sleep(max(0.0, stopped + FORWARD_WINDOW - time.monotonic()))

    leader = c.leader(timeout=ELECTION_BOUND)
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = sorted(tried)
        truth = dict(zip(keys, pool.map(leader.value, keys)))
        lost = {k: v for k, v in acked.items() if truth[k] != v}
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost: {sorted(lost)[:10]}"
        commit = leader.status()["commit_index"]
        for node in c.nodes.values():
            wait_until(lambda n=node: n.status()["applied_index"] >= commit, AGREE_BOUND,
                       what=f"{node.id} to apply up to {commit}")
            seen = dict(zip(keys, pool.map(lambda k, n=node: n.value(k, stale=True), keys)))
            differ = {k: (seen[k], truth[k]) for k in keys if seen[k] != truth[k]}
            assert not differ, f"{node.id} diverges from the leader on {len(differ)} keys: {sorted(differ.items())[:5]}"
    counts = {n.id: n.status()["num_keys"] for n in c.nodes.values()}
    assert len(set(counts.values())) == 1, counts
    assert len(acked) >= 10, f"only {len(acked)} writes acknowledged in the run"
    print(f"churn: {len(tried)} writes tried, {len(acked)} acknowledged, "
          f"{sum(1 for v in truth.values() if v is not None)} present")


def test_reliable_churn(make_cluster):
    churn(make_cluster(5, seed=21), seed=21, unreliable=False)


def test_unreliable_churn(make_cluster):
    churn(make_cluster(5, seed=22), seed=22, unreliable=True)
