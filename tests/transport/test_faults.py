"""Fault injection in the transport: the spec parser (fuzzed) and drops and
delays between two real TCP transports."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.raft.messages import RequestVoteResponse
from raftkv.transport.faults import FaultInjector, FaultSpecError, parse_fault_spec

# --- the spec ------------------------------------------------------------------

def test_dashboard_shapes_parse():
    [r] = parse_fault_spec({"drop": ["n2", "n3"]})
    assert r.drop and r.peers == {"n2", "n3"} and r.direction == "both"
    [r] = parse_fault_spec({"delay_ms": 150, "peers": ["n2"]})
    assert not r.drop and r.delay_ms == 150 and r.peers == {"n2"}
    [r] = parse_fault_spec({"delay_ms": 10})
    assert r.peers is None
    [r] = parse_fault_spec({"drop": "*", "direction": "out", "duration_s": 2})
    assert r.peers is None and r.direction == "out" and r.duration_s == 2
    rules = parse_fault_spec({"drop": ["n2"], "delay_ms": 5, "peers": ["n3"]})
    assert [(x.drop, x.peers) for x in rules] == [(True, {"n2"}), (False, {"n3"})]


@pytest.mark.parametrize("doc,param", [
    ([], "body"), ({}, "body"), ({"drop": []}, "body"), ({"delay_ms": 0}, "body"),
    ({"drop": "n2"}, "drop"), ({"drop": [1]}, "drop"), ({"drop": [""]}, "drop"),
    ({"delay_ms": -1}, "delay_ms"), ({"delay_ms": "5"}, "delay_ms"), ({"delay_ms": True}, "delay_ms"),
    ({"delay_ms": 10**9}, "delay_ms"), ({"drop": ["n2"], "direction": "sideways"}, "direction"),
    ({"drop": ["n2"], "duration_s": 0}, "duration_s"), ({"drop": ["n2"], "duration_s": float("nan")}, "duration_s"),
    ({"drop": ["n2"], "peer": ["n3"]}, "peer"), ({"delay_ms": 5, "peers": "n2"}, "peers"),
])
def test_bad_specs_name_the_field(doc, param):
    with pytest.raises(FaultSpecError) as exc:
        parse_fault_spec(doc)
    assert exc.value.param == param


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                     max_leaves=12)
_fields = st.dictionaries(st.sampled_from(["drop", "delay_ms", "peers", "direction", "duration_s", "x"]),
                          _json, max_size=5)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_json, _fields))
def test_any_json_is_rules_or_a_named_error(doc):
    try:
        rules = parse_fault_spec(doc)
    except FaultSpecError as exc:
        assert exc.param and exc.message
        return
    assert rules
    for r in rules:
        assert r.direction in ("both", "in", "out")
        assert r.drop or 0 < r.delay_ms <= 60_000
        json.dumps(r.to_dict(0.0))


def test_rules_expire_and_heal():
    now = [0.0]
    inj = FaultInjector(clock=lambda: now[0])
    inj.add(parse_fault_spec({"drop": ["n2"], "duration_s": 1, "direction": "in"}))
    inj.add(parse_fault_spec({"delay_ms": 100}))
    assert inj.verdict("n2", "in") == (True, 0.0)
    assert inj.verdict("n2", "out") == (False, 0.1)
    now[0] = 1.5
    assert inj.verdict("n2", "in") == (False, 0.1)
    assert len(inj.describe()["rules"]) == 1
    assert inj.clear() == 1 and inj.verdict("n3", "out") == (False, 0.0)


# --- on the wire -----------------------------------------------------------------

async def test_dropped_then_healed(transports, watch):
    inj = FaultInjector()
    a, a_in, _ = await transports("n1", faults=inj)
    b, b_in, _ = await transports("n2")
    a.send("n2", b.address, RequestVoteResponse(1, True))
    await watch.until(lambda: len(b_in.items) == 1)
    inj.add(parse_fault_spec({"drop": ["n2"]}))
    for i in range(2, 12):
        a.send("n2", b.address, RequestVoteResponse(i, True))      # out: dropped at a
        b.send("n1", a.address, RequestVoteResponse(i, False))     # in: dropped at a
    assert inj.dropped == {"in": 0, "out": 10}
    await watch.until(lambda: inj.dropped["in"] == 10)
    assert len(b_in.items) == 1 and a_in.items == []
    inj.clear()
    a.send("n2", b.address, RequestVoteResponse(99, True))
    b.send("n1", a.address, RequestVoteResponse(99, False))
    await watch.until(lambda: len(b_in.items) == 2 and len(a_in.items) == 1)
    assert b_in.items[-1][1].term == 99 and a_in.items[-1][1].term == 99


async def test_delay_holds_messages_back_in_order(transports, watch):
    inj = FaultInjector()
    a, _, _ = await transports("n1", faults=inj)
    b, b_in, _ = await transports("n2")
    inj.add(parse_fault_spec({"delay_ms": 300, "peers": ["n2"], "direction": "out"}))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(20):
        a.send("n2", b.address, RequestVoteResponse(i, True))
    await watch.until(lambda: len(b_in.items) == 20)
    assert loop.time() - start >= 0.29
    assert [m.term for _, m in b_in.items] == list(range(20))


def test_a_delay_below_a_millisecond_is_still_a_delay():
    [rule] = parse_fault_spec({"delay_ms": 0.5})
    assert rule.delay_ms == 1
