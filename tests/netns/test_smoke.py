"""A cluster of namespaced nodes forms, serves, and survives its leader's kill -9."""

from __future__ import annotations

import subprocess

import pytest

from raftkv.chaos.netnode import wait_until

pytestmark = pytest.mark.timeout(90)


def test_three_hosts_elect_write_read_and_survive_kill(make_cluster):
    c = make_cluster(3)
    c.form()
    leader = c.leader()
    assert leader.set("greeting", "hello").status == 200
    for node in c.nodes.values():
        wait_until(lambda: node.value("greeting", stale=True) == "hello", 10, what=f"{node.id} to apply")
    # each node really is its own host: its own address, its peers' link addresses
    peers = {p["id"]: p for p in leader.get("/peers").json()}
    assert peers["n2"]["address"] == "10.77.0.102:9000"
    assert leader.status()["http_address"] == f"10.77.0.1{leader.index}:8000"

    leader.kill()
    new = c.leader(timeout=15)
    assert new.id != leader.id
    assert new.set("after", "kill").status == 200
    assert new.value("greeting") == "hello"


def test_teardown_removes_every_namespace(make_cluster):
    c = make_cluster(2)
    names = [c.switch] + [n.netns for n in c.nodes.values()]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert all(name in listed for name in names)
    c.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names)
    # and the root namespace never saw a veth or an address of the cluster
    links = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert "10.77.0." not in links
