"""Settings of the fault-tolerance features: fault injection is off unless
asked for, by env or by a bare flag."""

from __future__ import annotations

import argparse

from raftkv.config import add_serve_arguments, load_settings

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
