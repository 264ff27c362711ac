"""The MIT 6.5840 Raft lab's snapshot tests, against live nodes on a real
network: SnapshotBasic, InstallSnapshot after a disconnect, after a crash
and through an unreliable network, and SnapshotAllCrash (a full restart
never decreases an index).

The nodes run with a low RAFT_SNAPSHOT_THRESHOLD, a short
RAFT_SNAPSHOT_INTERVAL and few RAFT_TRAILING_LOGS, so a few dozen writes
make every node snapshot and the leader compact its log past a follower
that was away; that follower can then only catch up by InstallSnapshot,
which it logs as ``Installed remote snapshot`` and shows in ``/status`` as
its ``last_snapshot_index``. (The link proxies only delay the frames of a
snapshot stream: a lost chunk would be a broken stream, not a lost message.)
"""

from __future__ import annotations

import pytest

from raftkv.chaos.netnode import wait_until

from labkit import AGREE_BOUND, ELECTION_BOUND, LONG, agreed_everywhere, one, submit_many

pytestmark = pytest.mark.timeout(240 if LONG else 90)

THRESHOLD = 20
TRAILING = 5
SNAPSHOT_ENV = {"RAFT_SNAPSHOT_THRESHOLD": str(THRESHOLD), "RAFT_SNAPSHOT_INTERVAL": "100ms",
                "RAFT_TRAILING_LOGS": str(TRAILING)}
BATCH = 3 * THRESHOLD


def write_batch(c, prefix: str, ids=None) -> None:
    """BATCH writes at once at the leader (of ``ids``), every one acknowledged."""
    leader = c.leader(timeout=ELECTION_BOUND, among=ids)
    assert submit_many(leader, prefix, BATCH, timeout=AGREE_BOUND) == BATCH


def wait_compacted_past(node, index: int) -> int:
    """Until ``node`` has dropped from its log the entry after ``index``:
    a peer that has only ``index`` needs a snapshot. Returns its snapshot index."""
    def compacted():
        snap = node.status()["last_snapshot_index"]
        return snap if snap - TRAILING > index + 1 else None
    return wait_until(compacted, AGREE_BOUND, what=f"{node.id} to compact its log past {index}")


def wait_installed(c, follower, snap: int) -> None:
    wait_until(lambda: follower.status()["last_snapshot_index"] >= snap, AGREE_BOUND,
               what=f"{follower.id} to install a snapshot at or after {snap}")
    # the line is written once the restore is on disk, which /status does not wait for
    wait_until(lambda: "Installed remote snapshot" in follower.log(), AGREE_BOUND,
               what=f"{follower.id} to log the snapshot it installed (not to catch up without InstallSnapshot)")


def check_serves(c, follower, prefixes) -> None:
    """The follower has the data from before and after the snapshot, and new writes."""
    for prefix in prefixes:
        for i in (0, BATCH - 1):
            agreed_everywhere(c, f"{prefix}{i}", str(i), ids=[follower.id])
    one(c, "after-install", "1")


def test_snapshot_basic(make_cluster):
    """Writes enough for snapshots: every node takes its own, and its log is
    trimmed to about the threshold plus the trailing entries."""
    c = make_cluster(3, env=SNAPSHOT_ENV)
    c.form()
    for round_ in range(3):
        write_batch(c, f"sb{round_}-")
    commit = c.leader().status()["commit_index"]
    for n in c.running():
        wait_until(lambda n=n: n.status()["applied_index"] >= commit, AGREE_BOUND, what=f"{n.id} to apply")
        wait_until(lambda n=n: n.status()["last_snapshot_index"] >= commit - 2 * THRESHOLD, AGREE_BOUND,
                   what=f"{n.id} to snapshot its log")
        assert n.value(f"sb0-{BATCH - 1}", stale=True) == str(BATCH - 1)
    one(c, "end", "1")


def test_snapshot_install_disconnect(make_cluster):
    c = make_cluster(3, env=SNAPSHOT_ENV)
    c.form()
    write_batch(c, "a-")
    leader = c.leader()
    follower = next(n for n in c.nodes.values() if n.id != leader.id)
    c.isolate(follower.id)
    behind = follower.status()["last_log_index"]
    rest = [i for i in c.nodes if i != follower.id]
    write_batch(c, "b-", rest)
    snap = wait_compacted_past(c.leader(among=rest), behind)
    c.heal_routes()
    wait_installed(c, follower, snap)
    check_serves(c, follower, ("a-", "b-"))


def test_snapshot_install_crash(make_cluster):
    """A follower killed while the leader compacts past it installs the
    snapshot when it comes back, and serves the data."""
    c = make_cluster(3, env=SNAPSHOT_ENV)
    c.form()
    write_batch(c, "a-")
    leader = c.leader()
    follower = next(n for n in c.nodes.values() if n.id != leader.id)
    behind = follower.status()["last_log_index"]
    follower.kill()
    write_batch(c, "b-")
    snap = wait_compacted_past(c.leader(), behind)
    follower.start().wait_ready()
    wait_installed(c, follower, snap)
    check_serves(c, follower, ("a-", "b-"))


def test_snapshot_install_unreliable(make_cluster):
    """The same after a disconnect, through links that lose, delay, duplicate
    and reorder messages (snapshot streams only delayed)."""
    c = make_cluster(3, env=SNAPSHOT_ENV, seed=31)
    c.form()
    write_batch(c, "a-")
    leader = c.leader()
    follower = next(n for n in c.nodes.values() if n.id != leader.id)
    c.isolate(follower.id)
    behind = follower.status()["last_log_index"]
    c.all_links(loss=0.1, delay_ms=10, jitter_ms=30, duplicate=0.05, reorder=0.05)
    rest = [i for i in c.nodes if i != follower.id]
    for prefix in ("b-", "c-") if LONG else ("b-",):
        one(c, f"{prefix}start", "1", ids=rest)
        write_batch(c, prefix, rest)
    snap = wait_compacted_past(c.leader(among=rest), behind)
    c.heal_routes()  # the links stay unreliable
    wait_installed(c, follower, snap)
    check_serves(c, follower, ("a-", "b-"))
    c.heal_links()


def test_snapshot_all_crash(make_cluster):
    """Every node killed at once after snapshots and restarted: no index goes
    back, neither right after the restart (what is on disk) nor once a leader
    commits again (the lab: the next command lands after the old ones)."""
    c = make_cluster(3, env=SNAPSHOT_ENV)
    c.form()
    for round_ in range(2 if LONG else 1):
        write_batch(c, f"r{round_}a-")
        write_batch(c, f"r{round_}b-")
        commit = c.leader().status()["commit_index"]
        for n in c.running():
            wait_until(lambda n=n: n.status()["applied_index"] >= commit, AGREE_BOUND, what=f"{n.id} to apply")
            wait_until(lambda n=n: n.status()["last_snapshot_index"] > 0, AGREE_BOUND, what=f"{n.id} to snapshot")
        before = {n.id: n.status() for n in c.running()}
        for n in c.nodes.values():
            n.kill()
        for n in c.nodes.values():
            n.start()
        for n in c.nodes.values():
            n.wait_ready()
            now = n.status()
            for field in ("last_snapshot_index", "last_log_index"):
                assert now[field] >= before[n.id][field], (n.id, field, before[n.id][field], now[field])
            assert now["applied_index"] >= before[n.id]["last_snapshot_index"], (n.id, now, before[n.id])
        leader = c.leader(timeout=ELECTION_BOUND)
        reply = leader.set(f"r{round_}-after", "1", timeout=AGREE_BOUND)
        assert reply.status == 200, reply
        assert reply.json()["index"] > max(s["commit_index"] for s in before.values())
        new_commit = leader.status()["commit_index"]
        for n in c.nodes.values():
            wait_until(lambda n=n: n.status()["applied_index"] >= new_commit, AGREE_BOUND,
                       what=f"{n.id} to apply after the restart")
            now = n.status()
            for field in ("commit_index", "applied_index", "last_snapshot_index"):
                assert now[field] >= before[n.id][field], (n.id, field, before[n.id][field], now[field])
            assert n.value(f"r{round_}a-0", stale=True) == "0"
