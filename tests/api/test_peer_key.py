"""RAFT_PEER_KEY: a key for the Raft port only."""

import pytest

from raftkv.config.settings import ConfigError, load_settings

BASE = {"RAFT_NODE_ID": "n1"}
KEY = "k" * 32


def test_the_peer_key_guards_the_raft_port_and_not_the_admin_routes():
    s = load_settings({**BASE, "RAFT_PEER_KEY": KEY})
    assert s.raft_port_key == KEY and s.cluster_key == ""


def test_the_cluster_key_still_guards_both():
    s = load_settings({**BASE, "RAFT_CLUSTER_KEY": KEY})
    assert s.raft_port_key == KEY == s.cluster_key


@pytest.mark.parametrize("env, problem", [
    ({"RAFT_PEER_KEY": KEY, "RAFT_CLUSTER_KEY": "c" * 32}, "differs from RAFT_CLUSTER_KEY"),
    ({"RAFT_PEER_KEY": KEY, "RAFT_PROTOCOL": "hashicorp"}, "hashicorp's net_transport has no cluster key"),
    ({"RAFT_PEER_KEY": "short"}, "at least 16 bytes"),
])
def test_contradictions_are_refused(env, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings({**BASE, **env})
