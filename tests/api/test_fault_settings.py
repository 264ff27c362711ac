"""Settings of the fault-tolerance features: fault injection is off unless
asked for, by env or by a bare flag."""

from __future__ import annotations

import argparse

from raftkv.config.settings import add_serve_arguments, load_settings

ENV = {"RAFT_NODE_ID": "n1"}


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_fault_injection_is_off_by_default_and_switched_on_by_env_or_flag():
    assert load_settings(ENV).fault_injection is False
    assert load_settings({**ENV, "RAFT_FAULT_INJECTION": "true"}).fault_injection is True
    assert load_settings(ENV, flags("--enable-fault-injection")).fault_injection is True
    assert load_settings({**ENV, "RAFT_FAULT_INJECTION": "true"},
                         flags("--enable-fault-injection=false")).fault_injection is False


def test_cluster_key_is_checked_and_never_shown():
    import pytest

    from raftkv.config.settings import ConfigError, describe_raft_config
    key = "0123456789abcdef0123"
    s = load_settings({**ENV, "RAFT_CLUSTER_KEY": key})
    assert s.cluster_key == key
    assert key not in repr(s) and key not in describe_raft_config(s)
    assert load_settings(ENV).cluster_key == ""
    with pytest.raises(ConfigError, match="RAFT_CLUSTER_KEY: a cluster key must be at least 16 bytes"):
        load_settings({**ENV, "RAFT_CLUSTER_KEY": "short"})
