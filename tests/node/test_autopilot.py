"""Autopilot's promotion rule: a nonvoter is promoted once it has been
healthy for ServerStabilizationTime after it joined (Vault's rule), whether
or not the leader is new; an interruption of its health restarts the clock."""

from __future__ import annotations

from types import SimpleNamespace

from raftkv.config.settings import NodeSettings
from raftkv.node.policies.autopilot import Autopilot, reachable_within
from raftkv.raft.configuration import Server, Suffrage
from raftkv.raft.node import LEADER
from raftkv.raft.configuration import Configuration
from raftkv.raft.progress import Progress
from raftkv.raft.status import NodeStatus, PeerStatus

STABILIZATION = 10_000


class FakeLeader:
    """What autopilot reads of the core: role, term, clock, log, progress, configuration."""

    def __init__(self) -> None:
        self.id = "n1"
        self.role = LEADER
        self.current_term = 2
        self.now = 0
        self.log = SimpleNamespace(last_index=3)
        self.progress: dict[str, Progress] = {}
        self.servers = [Server("n1", "127.0.0.1:9000", Suffrage.VOTER)]

    @property
    def configuration(self):
        return SimpleNamespace(servers=self.servers)

    def join(self, server_id: str) -> None:
        self.servers.append(Server(server_id, f"127.0.0.1:{9000 + len(self.servers)}", Suffrage.NONVOTER))
        self.progress[server_id] = Progress(next_index=self.log.last_index + 1, last_contact=self.now)

    def status(self) -> NodeStatus:
        """The frozen view autopilot reads, as RaftNode.status() builds it."""
        conf = Configuration(tuple(self.servers))
        last = self.log.last_index
        peers = tuple(PeerStatus(s.id, s.address, s.suffrage, self.progress[s.id].match_index,
                                 self.progress[s.id].next_index,
                                 max(0, self.now - self.progress[s.id].last_contact), "probe", 0, 0)
                      for s in self.servers if s.id != self.id and s.id in self.progress)
        return NodeStatus(self.id, "127.0.0.1:9000", self.role, self.current_term, self.id, "127.0.0.1:9000",
                          1, last, self.current_term, 0, last, last, 0, 0, conf, 1, conf, 1, 0, True, None,
                          self.now, peers)

    def hear_from(self, server_id: str) -> None:
        pr = self.progress[server_id]
        pr.match_index = self.log.last_index
        pr.last_contact = self.now


def make_autopilot(core: FakeLeader, last_contact_threshold: int = 10_000) -> Autopilot:
    settings = NodeSettings(node_id="n1", server_stabilization_time=STABILIZATION,
                            last_contact_threshold=last_contact_threshold)

    async def change_membership(*_args):
        return 0
    return Autopilot(core.status, change_membership, settings, clock=lambda: core.now)


def run_until(core: FakeLeader, pilot: Autopilot, until: int, answering: tuple[str, ...]) -> dict[str, int]:
    """Checks every second up to ``until``; the answering servers reply to
    every heartbeat. When each server was first chosen for promotion."""
    promoted: dict[str, int] = {}
    while core.now <= until:
        for server_id in answering:
            core.hear_from(server_id)
        for server in pilot.evaluate(core.now):
            promoted.setdefault(server.id, core.now)
        core.now += 1000
    return promoted


def test_first_join_to_a_fresh_leader_waits_the_stabilization_time():
    core = FakeLeader()
    pilot = make_autopilot(core)
    assert pilot.evaluate(core.now) == []   # autopilot starts with the leader
    core.now = 500
    core.join("n2")
    promoted = run_until(core, pilot, 30_000, answering=("n2",))
    # healthy from its first answer (t=500), promoted no sooner than 10 s later
    assert STABILIZATION + 500 <= promoted["n2"] <= STABILIZATION + 500 + 1000, promoted


def test_a_nonvoter_that_joined_under_an_earlier_leader_is_watched_afresh():
    core = FakeLeader()
    core.join("n2")
    core.hear_from("n2")
    core.now = 60_000           # this node became leader long after n2 joined
    pilot = make_autopilot(core)
    promoted = run_until(core, pilot, 90_000, answering=("n2",))
    assert promoted["n2"] >= 60_000 + STABILIZATION, promoted


def test_an_interruption_restarts_the_clock():
    core = FakeLeader()
    pilot = make_autopilot(core, last_contact_threshold=2_000)
    core.join("n2")
    assert run_until(core, pilot, 6_000, answering=("n2",)) == {}
    # silent for longer than LastContactThreshold: unhealthy
    assert run_until(core, pilot, 18_000, answering=()) == {}
    resumed = core.now
    promoted = run_until(core, pilot, 40_000, answering=("n2",))
    assert promoted["n2"] >= resumed + STABILIZATION, promoted


def test_peers_reachability_window_is_two_heartbeat_timeouts():
    s = NodeSettings(node_id="n1", heartbeat_timeout=300, last_contact_threshold=10_000)
    assert reachable_within(s) == 600
    s = NodeSettings(node_id="n1", heartbeat_timeout=1000, last_contact_threshold=200)
    assert reachable_within(s) == 200
