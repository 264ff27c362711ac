"""Read leases (raftkv/raft/lease.py) and the read levels' documented limits,
in the simulator: an old leader cut off right after a commit still holds its
lease while the others elect a new leader and commit a write. The new
leader's deferred commit keeps the lease read from going stale; breaking
the deferral, or a clock drifting beyond the bound the lease assumes, lets
the checker catch a stale read; a ``weak`` read (the leader's own belief)
is stale there by design."""

from __future__ import annotations

from dataclasses import replace

import pytest

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.lease import LeaseRules
from raftkv.raft.messages import TimeoutNow
from raftkv.sim.cluster import SIM_CONFIG, SimCluster
from raftkv.sim.fuzz import ClientModel
from raftkv.sim.invariants import InvariantChecker, Violation

IDS = ["n1", "n2", "n3"]
# a lease longer than an election takes, and no check-quorum step-down: the
# old leader goes on believing it leads, so only the lease protects its reads
CONFIG = replace(SIM_CONFIG, check_quorum=False, read_lease=400)


def _partitioned_old_leader(rates: dict[str, float] | None = None, old_leader_rate: float | None = None):
    """A cluster whose leader committed x=1 and was then cut off while the
    others elected a new leader and acknowledged x=2 (``old_leader_rate``:
    the old leader's clock runs at that rate from before x=1 on). Returns
    the cluster, the clients, the old leader's id and the new one's."""
    checker = InvariantChecker()
    c = SimCluster(7, IDS, config=CONFIG, observer=checker)
    c.clock_rates = dict(rates or {})
    clients = ClientModel(c, checker)
    for i in IDS:
        c.start(i)
    c.bootstrap(IDS)
    c.run_until(2000, stop=lambda: c.leader() is not None and c.leader().raft.committed_in_term())
    old = c.leader().id
    if old_leader_rate is not None:
        c.set_clock_rate(old, old_leader_rate)
    clients.write(old, "x", "1")
    c.run_until(c.now + 500, stop=lambda: len(clients.acked) == 1)
    assert len(clients.acked) == 1
    for other in IDS:
        if other != old:
            c.blocked |= {(old, other), (other, old)}
    new = None

    def new_leader_acked() -> bool:
        nonlocal new
        leaders = [n for n in c.live() if n.raft.is_leader and n.id != old]
        if new is None and leaders and leaders[0].raft.current_term > c.nodes[old].raft.current_term:
            new = leaders[0].id
            clients.write(new, "x", "2")
        return len(clients.acked) == 2
    c.run_until(c.now + 3000, stop=new_leader_acked)
    assert new is not None and len(clients.acked) == 2, "the majority side elected a leader and took x=2"
    return c, clients, old, new


def test_a_cut_off_leader_never_serves_a_stale_lease_read():
    c, clients, old, _new = _partitioned_old_leader()
    assert c.nodes[old].raft.is_leader       # it still believes it leads
    clients.read(old, "x", lease=True)       # its lease ran out before x=2 could commit
    c.run_until(c.now + 200)
    assert clients.reads == 0                # so it confirms by heartbeat round, which the cut never lets through


def test_new_leaders_defer_commits_until_the_old_lease_is_over(monkeypatch):
    """Break the deferral: the new leader commits x=2 at once, the old one
    still holds its lease and serves x=1; the checker must catch it."""
    monkeypatch.setattr(LeaseRules, "inherited_until", lambda self, appended: appended)
    c, clients, old, _new = _partitioned_old_leader()
    with pytest.raises(Violation, match="Linearizable read"):
        clients.read(old, "x", lease=True)


def test_clocks_within_the_drift_bound_keep_lease_reads_linearizable():
    drift = CONFIG.lease_drift
    for rates in ({"n1": 1 - drift, "n2": 1 + drift, "n3": 1 + drift},
                  {"n1": 1 + drift, "n2": 1 - drift, "n3": 1 - drift}):
        c, clients, old, _new = _partitioned_old_leader(rates)
        clients.read(old, "x", lease=True)
        c.run_until(c.now + 200)
        assert clients.reads == 0


def test_a_clock_drifting_beyond_the_bound_serves_a_stale_lease_read():
    """The documented limit: the old leader's clock runs at 40 % of real
    time, far beyond the 1 % bound, so its lease outlives what the new
    leader waits for."""
    c, clients, old, new = _partitioned_old_leader(old_leader_rate=0.4)
    with pytest.raises(Violation, match="Linearizable read"):
        clients.read(old, "x", lease=True)


def test_a_weak_read_on_a_cut_off_leader_is_stale():
    """The documented limit of ``weak``: the node believes it leads and
    answers from its own state, unchecked."""
    c, clients, old, new = _partitioned_old_leader()
    assert c.nodes[old].raft.is_leader
    read = clients.read(old, "x", level="weak")
    assert (read.outcome, read.value, read.stale) == ("served", "1", True)
    assert "cannot know" in read.why
    assert clients.read(new, "x", level="weak").value == "2"
    assert clients.read(old, "x", level="none").stale
    assert (clients.reads, clients.unchecked_reads, clients.stale_reads) == (0, 3, 2)


def test_a_cut_off_leader_serves_no_read_that_is_checked():
    """linearizable, lease and strong reads on the old leader wait (its
    heartbeat round and its entry never reach a majority) and are refused
    once the partition heals and it learns of the newer term."""
    c, clients, old, _new = _partitioned_old_leader()
    reads = [clients.read(old, "x", level=level) for level in ("linearizable", "lease", "strong")]
    c.run_until(c.now + 300)
    assert [r.outcome for r in reads] == ["waiting"] * 3 and clients.reads == 0
    c.blocked.clear()
    c.run_until(c.now + 300)
    assert [r.outcome for r in reads] == ["refused"] * 3
    assert clients.read(old, "x", level="strong").outcome == "refused"   # a follower now


def test_the_lease_shown_outside_the_core_ends_before_a_handover_starts():
    """What HTTP workers serve lease reads by (RaftNode.read_lease): the
    leader's lease and the index a reader's state must reach, and none from
    the step that starts a handover on, before its TimeoutNow is sent."""
    c = SimCluster(11, IDS, config=CONFIG)
    for i in IDS:
        c.start(i)
    c.bootstrap(IDS)
    c.run_until(2000, stop=lambda: c.leader() is not None and c.leader().raft.committed_in_term())
    leader = c.leader()
    raft = leader.raft
    clients = ClientModel(c, InvariantChecker())
    clients.write(leader.id, "x", "1")
    c.run_until(c.now + 500, stop=lambda: len(clients.acked) == 1)
    until, floor = raft.read_lease()
    assert until > raft.now and floor == raft.leader.first_index_of_term <= raft.commit_index
    for follower in IDS:
        assert c.nodes[follower].raft.read_lease() == (0, 0) or follower == leader.id
    shown = []

    def watch(node, event, effects) -> None:
        if node.id == leader.id:
            sends_timeout_now = any(isinstance(e, fx.Send) and isinstance(e.message, TimeoutNow) for e in effects)
            shown.append((sends_timeout_now, node.raft.read_lease()))
    c.step_observers.append(watch)
    target = next(i for i in IDS if i != leader.id)
    c.step(leader.id, ev.TransferLeadership(999, target))
    assert shown[0][1] == (0, 0)
    c.run_until(c.now + 1000, stop=lambda: c.nodes[target].raft.is_leader)
    assert c.nodes[target].raft.is_leader
    assert any(sent for sent, _ in shown) and all(lease == (0, 0) for _, lease in shown)
