"""The MIT 6.5840 Raft lab tests of agreement under load and of persistence,
against live nodes on a real network: ConcurrentStarts, UnreliableAgree,
Persist2, Persist3 and Figure8 (the reliable one).

Same conventions as ``test_lab_6_5840.py``: a "crash" is kill -9 and a
restart the ordinary start, a "disconnect" is a route partition,
"unreliable" is loss, delay, duplication and reordering on every link's
proxy. Every write has its own key, so "no acknowledged write is lost" is a
plain lookup of each acknowledged key. The randomized ones run a bounded
time here and longer with ``RAFTKV_NETNS_LONG=1``.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from raftkv.chaos.netnode import wait_until

from labkit import AGREE_BOUND, ELECTION_BOUND, LONG, agreed_everywhere, one, submit_many

pytestmark = pytest.mark.timeout(240 if LONG else 90)


def restart(*nodes):
    """Start crashed nodes together (each start is a Python start-up), then
    wait for all of them."""
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_ready()


def assert_all_readable(c, acked: dict[str, str]):
    """Every acknowledged write, on a linearizable read from the leader."""
    leader = c.leader(timeout=ELECTION_BOUND)
    missing = {k: v for k, v in acked.items() if leader.value(k) != v}
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost: {sorted(missing)[:10]}"


def test_concurrent_starts(make_cluster):
    """Many commands started at once at the leader of one term all commit,
    each at its own index, and the term does not change."""
    c = make_cluster(3)
    c.form()
    one(c, "warm", "1")
    for attempt in range(5):  # the lab retries when the term moved under it
        leader = c.leader(timeout=ELECTION_BOUND)
        term = leader.status()["term"]
        count = 20
        with ThreadPoolExecutor(max_workers=count) as pool:
            replies = list(pool.map(lambda i: leader.set(f"cs{attempt}-{i}", str(i), timeout=AGREE_BOUND),
                                    range(count)))
        if leader.status()["term"] != term or leader.state() != "Leader":
            continue
        assert all(r.status == 200 for r in replies), [r.status for r in replies]
        indexes = sorted(r.json()["index"] for r in replies)
        assert len(set(indexes)) == count, indexes
        # one term, one leader, nothing else proposed: the commands are the
        # next entries of its log, in some order of their arrival
        assert indexes[-1] - indexes[0] < count + 3, indexes
        for i in (0, count - 1):
            agreed_everywhere(c, f"cs{attempt}-{i}", str(i))
        commit = leader.status()["commit_index"]
        for n in c.running():
            wait_until(lambda n=n: n.status()["applied_index"] >= commit, AGREE_BOUND,
                       what=f"{n.id} to apply up to {commit}")
            assert all(n.value(f"cs{attempt}-{i}", stale=True) == str(i) for i in range(count)), n.id
        return
    pytest.fail("the term changed in every attempt without faults")


def test_unreliable_agree(make_cluster):
    """Concurrent writes over links that lose, delay, duplicate and reorder
    messages: every write commits (clients retry as one() does), and all of
    them are readable afterwards on every node."""
    c = make_cluster(5, seed=5)
    c.form()
    c.all_links(loss=0.1, delay_ms=5, jitter_ms=20, duplicate=0.05, reorder=0.05)
    acked: dict[str, str] = {}

    def commit(key: str, value: str) -> None:
        deadline = time.monotonic() + AGREE_BOUND
        while time.monotonic() < deadline:
            node = random.choice(c.running())  # followers forward to the leader
            if node.set(key, value, timeout=2.0).status == 200:
                acked[key] = value
                return
            time.sleep(0.05)
        raise AssertionError(f"{key}={value} not committed within {AGREE_BOUND}s on the unreliable network")

    iterations = 50 if LONG else 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        for it in range(1, iterations + 1):
            futures = [pool.submit(commit, f"ua{it}-{j}", str(100 * it + j)) for j in range(4)]
            commit(f"ua{it}", str(it))
            for f in futures:
                f.result()
    c.heal()
    one(c, "final", "100")
    assert_all_readable(c, acked)
    for n in c.running():
        for key in (f"ua{iterations}", f"ua{iterations}-3", "ua1-0"):
            agreed_everywhere(c, key, acked[key], ids=[n.id])


def test_persist2(make_cluster):
    """Repeated crashes and restarts of followers and of the leader, writing
    all along: every acknowledged write survives (the lab's Persist2, with
    its disconnects of crashed servers as kill -9)."""
    c = make_cluster(5)
    c.form()
    ids = list(c.nodes)
    acked: dict[str, str] = {}

    def write(key, value, among=None):
        one(c, key, value, ids=among)
        acked[key] = value

    for it in range(5 if LONG else 2):
        write(f"p{it}a", str(it), ids)
        l1 = ids.index(c.leader().id)
        at = [ids[(l1 + k) % len(ids)] for k in range(len(ids))]
        c[at[1]].kill()
        c[at[2]].kill()
        write(f"p{it}b", str(it), [at[0], at[3], at[4]])
        c[at[0]].kill()
        c[at[3]].kill()
        c.partition([at[1], at[2], at[3]], [at[4]])  # at[4] runs on, disconnected
        restart(c[at[1]], c[at[2]])
        time.sleep(0.3)  # the lab's one election timeout before the third comes back
        restart(c[at[3]])
        write(f"p{it}c", str(it), [at[1], at[2], at[3]])
        restart(c[at[0]])
        c.heal_routes()
    write("p-end", "1000", ids)
    assert_all_readable(c, acked)


def test_persist3(make_cluster):
    """The lab's Persist3 (a leader and a follower crash while the third is
    disconnected, and come back one by one), then its variant with a
    partitioned leader that holds uncommitted entries when it crashes: the
    rest of the cluster moves on, and those entries never show up."""
    c = make_cluster(3)
    c.form()
    one(c, "k", "101")
    ids = list(c.nodes)
    l0 = ids.index(c.leader().id)
    at = [ids[(l0 + k) % 3] for k in range(3)]
    c.isolate(at[2])
    one(c, "k", "102", ids=[at[0], at[1]])
    c[at[0]].kill()
    c[at[1]].kill()
    c.heal_routes()
    restart(c[at[0]])
    one(c, "k", "103", ids=[at[0], at[2]])
    restart(c[at[1]])
    one(c, "k", "104")

    old = c.leader(timeout=ELECTION_BOUND)
    c.isolate(old.id)
    assert submit_many(old, "uncommitted", 3, timeout=0.5) == 0
    wait_until(lambda: old.status()["last_log_index"] > old.status()["commit_index"], AGREE_BOUND,
               what=f"{old.id} to hold uncommitted entries")
    old.kill()
    rest = [i for i in ids if i != old.id]
    one(c, "k", "105", ids=rest)
    one(c, "k", "106", ids=rest)
    restart(old)  # still cut off: it comes back with its stale entries
    one(c, "k", "107", ids=rest)
    c.heal_routes()
    one(c, "k", "108")
    for i in range(3):
        assert c.leader().value(f"uncommitted{i}") is None
        wait_until(lambda i=i: old.value(f"uncommitted{i}", stale=True) is None, AGREE_BOUND,
                   what=f"{old.id} to drop its uncommitted entries")


def test_figure8(make_cluster):
    """Figure 8 on a reliable network: leaders crash right after taking
    writes, sometimes before they can commit them, crashed servers come back
    at random; at the end everyone is restarted, one command commits within
    the lab's 10 s, and no acknowledged write is lost."""
    c = make_cluster(5, seed=88)
    c.form()
    rng = random.Random(88)
    one(c, "start", "1")
    acked: dict[str, str] = {}
    deadline = time.monotonic() + (60 if LONG else 8)
    i = 0
    with ThreadPoolExecutor(max_workers=8) as pool:

        def write(node, key, value):
            if node.set(key, value, timeout=1.0).status == 200:
                acked[key] = value

        while time.monotonic() < deadline:
            leaders = c.leaders()
            if leaders:
                leader = leaders[0]
                for _ in range(rng.randint(1, 4)):
                    pool.submit(write, leader, f"f8-{i}", str(i))
                    i += 1
                # mostly right away (entries not yet replicated), sometimes later
                time.sleep(rng.random() * 0.013 if rng.random() < 0.9 else rng.random() * 0.5)
                leader.kill()
            else:
                time.sleep(0.05)
            up = c.running()
            if len(up) < 3:
                dead = [n for n in c.nodes.values() if not n.running]
                restart(*rng.sample(dead, 3 - len(up)))
    restart(*[n for n in c.nodes.values() if not n.running])
    one(c, "final", "1", timeout=AGREE_BOUND)
    assert_all_readable(c, acked)
    assert len(acked) >= 3, f"only {len(acked)} writes acknowledged in the run"
    print(f"figure8: {i} writes started, {len(acked)} acknowledged")
