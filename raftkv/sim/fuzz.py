"""Randomized simulation runs: faults, clients and membership churn.

Theory of operation: one run = one seed. A run starts 3 voters (plus spare
nodes that may join), then for a bounded stretch of simulated time injects
faults drawn from the seed (message drop, duplication, reordering by random
delay, symmetric and one-way partitions that heal, crashes between steps and
in the middle of a step, restarts, and lost disks: a node wiped and started
again empty under its old name, as long as a quorum of voters keeps the
volumes they were admitted with), while clients write, delete and read at
every level (:mod:`.clients`: ``linearizable``, ``lease`` and ``strong``
reads are checked, ``none`` and ``weak`` ones counted), and an operator
adds, promotes, demotes and removes servers, transfers leadership and forces
snapshots. Then every fault heals,
every crashed member restarts, and liveness is required: a leader within a
bound, a final write committed, and every acknowledged write applied on every
member. The invariant checker runs after every step throughout.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, replace

from raftkv.raft import events as ev
from raftkv.raft.configuration import ConfigCommand, Configuration
from raftkv.raft.messages import EntryType

from .clients import ClientModel
from .cluster import SIM_CONFIG, SimCluster
from .invariants import InvariantChecker, Violation

__all__ = ["ClientModel", "RunResult", "run_many", "run_once"]

# Log limits just over the snapshot threshold (in entries) and a few dozen
# entries (in bytes), so that runs also take snapshots the moment the log is
# full, and compact to fewer than TrailingLogs entries.
FUZZ_CONFIG = replace(SIM_CONFIG, snapshot_log_limit=48, snapshot_log_bytes=256)

VOTERS = ["n1", "n2", "n3"]
SPARES = ["n4", "n5"]
KEYS = ["a", "b", "c"]
CHAOS_MS = 6000
SETTLE_MS = 8000


@dataclass
class RunResult:
    seed: int
    steps: int
    violation: Violation | None
    recent: list[str]
    acked: int
    reads: int              # linearizable, lease and strong reads served, each checked
    unchecked_reads: int = 0   # none and weak reads served (allowed to be stale, so only counted)
    stale_reads: int = 0       # of those, the stale ones


def run_once(seed: int, chaos_ms: int = CHAOS_MS, node_factory=None) -> RunResult:
    checker = InvariantChecker()
    cluster = SimCluster(seed, VOTERS + SPARES, config=FUZZ_CONFIG, observer=checker)
    recent: deque[str] = deque(maxlen=25)
    cluster.trace = lambda kind, text: recent.append(f"{cluster.now}ms {text}") if kind == "event" else None
    rng = cluster.rng
    clients = ClientModel(cluster, checker)
    # every node's clock drifts, within the bound the read lease assumes; a
    # generator of its own, so that the rest of a seed's run stays as it was
    clocks = random.Random(seed ^ 0x5EED)
    drift = FUZZ_CONFIG.lease_drift
    cluster.clock_rates = {i: clocks.uniform(1 - drift, 1 + drift) for i in VOTERS + SPARES}
    clients.levels = clocks
    cluster.drop_rate = rng.choice([0.0, 0.02, 0.1])
    cluster.dup_rate = rng.choice([0.0, 0.02, 0.05])
    cluster.max_delay = rng.choice([3, 10, 30])
    crash_rate = rng.choice([0.0, 0.5, 1.0])
    wipe_rate = rng.choice([0.0, 0.5, 1.0])
    try:
        for node_id in VOTERS:
            cluster.start(node_id)
        cluster.bootstrap(VOTERS)
        t = 0
        while t < chaos_ms:
            t += 5 + rng.randrange(40)
            cluster.run_until(t)
            _random_action(cluster, clients, rng, crash_rate, wipe_rate)
        _heal_and_settle(cluster, clients)
        violation = None
    except Violation as exc:
        violation = exc
    return RunResult(seed, cluster.steps, violation, list(recent), len(clients.acked), clients.reads,
                     clients.unchecked_reads, clients.stale_reads)


def _random_action(cluster: SimCluster, clients: ClientModel, rng, crash_rate: float, wipe_rate: float) -> None:
    live = cluster.live()
    roll = rng.random()
    if roll < 0.45 and live:
        node = rng.choice(live)
        leader = cluster.leader()
        target = leader if leader is not None and rng.random() < 0.8 else node
        clients.write(target.id, rng.choice(KEYS), None if rng.random() < 0.1 else f"v{clients.next_id}")
    elif roll < 0.65 and live:
        leader = cluster.leader()
        target = leader if leader is not None and rng.random() < 0.8 else rng.choice(live)
        clients.read(target.id, rng.choice(KEYS), level=clients.pick_level())
    elif roll < 0.70:
        members = _members(cluster)
        if rng.random() < crash_rate and live:
            victim = rng.choice(live)
            if rng.random() < 0.3:
                cluster.crash_mid_step_rate = 1.0   # the victim's next step dies half-done
                cluster.step(victim.id, ev.Tick(cluster.clock(victim.id)))
                cluster.crash_mid_step_rate = 0.0
            if rng.random() < wipe_rate and _can_lose_disk(cluster, victim.id):
                _lose_disk(cluster, victim.id, rng)
            else:
                cluster.crash(victim.id)
        down = [n for n in cluster.nodes.values() if not n.alive and (n.id in members or n.durable.term)]
        if down and rng.random() < 0.7:
            cluster.start(rng.choice(down).id)
    elif roll < 0.76:
        ids = list(cluster.nodes)
        a, b = rng.sample(ids, 2)
        cluster.blocked.add((a, b))
        if rng.random() < 0.6:
            cluster.blocked.add((b, a))
        heal_at = cluster.now + 50 + rng.randrange(600)
        cluster.schedule(heal_at, "call", lambda a=a, b=b: (cluster.blocked.discard((a, b)),
                                                            cluster.blocked.discard((b, a))))
    elif roll < 0.80:
        # isolate one node from everyone for a while
        victim = rng.choice(list(cluster.nodes))
        pairs = [(victim, o) for o in cluster.nodes if o != victim] + \
                [(o, victim) for o in cluster.nodes if o != victim]
        cluster.blocked.update(pairs)
        cluster.schedule(cluster.now + 100 + rng.randrange(800), "call",
                         lambda pairs=pairs: cluster.blocked.difference_update(pairs))
    elif roll < 0.88:
        _membership_change(cluster, clients, rng)
    elif roll < 0.92:
        leader = cluster.leader()
        if leader is not None:
            cluster.step(leader.id, ev.TransferLeadership(clients._request_id(),
                                                          rng.choice([None, *leader.raft.configuration.voters])))
    elif roll < 0.95:
        node = rng.choice(live) if live else None
        if node is not None:
            cluster.step(node.id, ev.RequestSnapshot(clients._request_id()))


def _lose_disk(cluster: SimCluster, node_id: str, rng) -> None:
    """Wipe a node and start it again empty at once. Half the time the
    leader crashes with it, so that a follower that lags behind campaigns
    while the wiped node is there to vote: the case the amnesia guard is
    for (docs/disks.md)."""
    leader = cluster.leader()
    cluster.wipe(node_id)
    if leader is not None and leader.id != node_id and rng.random() < 0.5:
        cluster.crash(leader.id)
    cluster.start(node_id)


def _can_lose_disk(cluster: SimCluster, node_id: str) -> bool:
    """Whether, in every configuration some disk holds (committed or not:
    any of them may be the one in force when the dust settles), a quorum of
    voters would still hold the volumes they were admitted with. With fewer,
    acknowledged writes may be gone from every disk that counts, which no
    protocol can undo: the guard then keeps the cluster waiting for an
    operator instead."""
    configurations = _durable_configurations(cluster)
    if not configurations or any(c != configurations[0] for c in configurations):
        # While servers disagree on the membership, a wipe can leave a cluster
        # that needs a vote from a server that does not know the one server
        # holding every write (docs/disks.md); only a wipe during settled
        # membership is one the guard must ride out.
        return False
    for config in configurations:
        voters = [s for s in config.servers if s.is_voter]
        intact = 0
        for server in voters:
            disk = cluster.nodes[server.id].durable
            if server.id != node_id and disk.last_index > 0 and (not server.volume or disk.volume == server.volume):
                intact += 1
        if intact < len(voters) // 2 + 1:
            return False
    return True


def _durable_configurations(cluster: SimCluster) -> list[Configuration]:
    """The newest configuration on each node's disk, down or up."""
    found = []
    for node in cluster.nodes.values():
        d = node.durable
        entries = [e for e in d.entries.values() if e.type is EntryType.CONFIGURATION]
        if entries:
            found.append(Configuration.decode(max(entries, key=lambda e: e.index).data))
        elif d.snapshot is not None and d.snapshot.configuration.servers:
            found.append(d.snapshot.configuration)
    return found


def _members(cluster: SimCluster) -> set[str]:
    leader = cluster.leader()
    if leader is not None:
        return set(leader.raft.configuration.ids)
    ids: set[str] = set()
    for node in cluster.live():
        ids |= set(node.raft.configuration.ids)
    return ids or set(VOTERS)


def _membership_change(cluster: SimCluster, clients: ClientModel, rng) -> None:
    leader = cluster.leader()
    if leader is None:
        return
    config = leader.raft.configuration
    rid = clients._request_id()
    choice = rng.random()
    outsiders = [i for i in cluster.nodes if not config.has(i)]
    nonvoters = [s.id for s in config.servers if not s.is_voter]
    voters = list(config.voters)
    if choice < 0.35 and outsiders:
        new = rng.choice(outsiders)
        node = cluster.nodes[new]
        if not node.alive:
            cluster.start(new)
        cluster.step(leader.id, ev.ChangeMembership(rid, ConfigCommand.ADD_NONVOTER, new, node.address))
    elif choice < 0.7 and nonvoters:
        new = rng.choice(nonvoters)
        progress = leader.raft.progress.get(new)
        if progress is None or progress.match_index < leader.raft.commit_index:
            return  # autopilot promotes only a nonvoter that has caught up
        cluster.step(leader.id, ev.ChangeMembership(rid, ConfigCommand.ADD_VOTER, new, cluster.nodes[new].address))
    elif choice < 0.85 and len(voters) > 3:
        cluster.step(leader.id, ev.ChangeMembership(rid, ConfigCommand.DEMOTE_VOTER, rng.choice(voters)))
    elif len(config.servers) > 3:
        victim = rng.choice(nonvoters or voters)
        if victim in voters and len(voters) <= 3:
            return
        cluster.step(leader.id, ev.ChangeMembership(rid, ConfigCommand.REMOVE_SERVER, victim))


def _heal_and_settle(cluster: SimCluster, clients: ClientModel) -> None:
    """Liveness: with every fault gone, a leader appears and writes commit."""
    cluster.blocked.clear()
    cluster.drop_rate = cluster.dup_rate = 0.0
    deadline = cluster.now + SETTLE_MS
    for node in cluster.nodes.values():
        if not node.alive and node.incarnation:
            cluster.start(node.id)
    final_index = final_term = None
    while cluster.now < deadline:
        cluster.run_until(cluster.now + 50)
        leader = cluster.leader()
        if leader is None or not leader.raft.committed_in_term():
            continue
        if final_index is None:
            rid = clients.write(leader.id, "final", "done")
            proposed = clients.proposed.get(rid)
            # refused (e.g. a transfer runs): retry
            final_index, final_term = (proposed[1], proposed[2]) if proposed else (None, None)
            continue
        members = [cluster.nodes[i] for i in leader.raft.configuration.ids]
        if clients.acked.get(final_index) is not None and all(
                n.alive and n.raft.last_applied >= clients.max_acked for n in members):
            return
        if leader.raft.log.entry(final_index) is None or \
                leader.raft.log.term_at(final_index) != final_term:
            # lost with an old leader, perhaps overwritten by the new leader's
            # own entry at the same index: ask again
            final_index = final_term = None
    leader = cluster.leader()
    state = "; ".join(cluster.describe_node(n) for n in cluster.nodes.values())
    raise Violation("Liveness", f"no progress {SETTLE_MS}ms after healing (leader "
                    f"{leader.id if leader else None}): {state}")


def run_many(runs: int, seed: int, out=print, chaos_ms: int = CHAOS_MS) -> int:
    started = time.monotonic()
    steps = reads = unchecked = stale = 0
    violations = 0
    for i in range(runs):
        result = run_once(seed + i, chaos_ms)
        steps += result.steps
        reads, unchecked, stale = reads + result.reads, unchecked + result.unchecked_reads, stale + result.stale_reads
        if result.violation is not None:
            violations += 1
            out(f"VIOLATION seed={result.seed}: {result.violation}")
            out("last events:")
            for line in result.recent:
                out(f"  {line}")
            out(f"replay: raftkv sim --runs 1 --seed {result.seed}")
            break
    elapsed = time.monotonic() - started
    out(f"sim: {i + 1} runs, {violations} violations, {steps} steps, {reads} reads checked, "
        f"{unchecked} none/weak reads ({stale} stale), {elapsed:.1f} s")
    return violations
