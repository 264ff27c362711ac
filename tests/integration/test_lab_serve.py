"""``raftkv serve --lab DIR``: three real nodes deciding by the lab's reference
solutions form a cluster that survives a leader kill with nothing lost."""

from __future__ import annotations

from cluster import wait_until

from raftkv.lab.cli import main as lab
from raftkv.lab.exercises import EXERCISES


def test_serve_lab_with_the_reference_solutions_survives_a_leader_kill(tmp_path, cluster):
    lab_dir = tmp_path / "lab"
    for exercise in EXERCISES:
        assert lab(["solve", exercise.name, str(lab_dir)], out=lambda line: None) == 0
    cluster.env["RAFT_LAB"] = str(lab_dir)
    leader = cluster.form(3)
    for node in cluster.nodes.values():
        wait_until(lambda node=node: "deciding by the lab's functions" in node.log(), 10,
                   what=f"{node.id} to say it runs the lab's rules")
    for i in range(20):
        leader.set(f"k{i}", f"v{i}")
    leader.kill()
    successor = cluster.leader(exclude=(leader.id,), timeout=20)
    successor.set("after", "kill")
    for i in range(20):
        assert successor.value(f"k{i}") == f"v{i}"
    leader.restart().wait_ready()
    wait_until(lambda: leader.value("after", stale=True) == "kill", 20, what="the old leader to catch up")
