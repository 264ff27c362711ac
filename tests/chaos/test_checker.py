"""The linearizability checker, checked: hand-made good and bad histories,
histories generated from a sequential execution (always linearizable), the
same with one read corrupted (never linearizable when nothing overlaps),
and a brute-force cross-check on small random histories."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings, strategies as st

from raftkv.chaos.checker import check, check_key, step
from raftkv.chaos.history import FAIL, OK, UNKNOWN, Op, load_history, save_history

_ids = itertools.count(1)


def op(f, call, ret, value=None, outcome=OK, removed=None, key="k", client=0):
    return Op(next(_ids), client, f, key, call, ret, outcome, value, removed)


def verdict(ops):
    return check(ops, time_limit=30).ok


# --- hand-made histories ----------------------------------------------------

def test_sequential_write_then_read_is_linearizable():
    assert verdict([op("set", 0, 1, "a"), op("get", 2, 3, "a")])


def test_stale_read_after_acknowledged_write_is_not():
    assert verdict([op("set", 0, 1, "a"), op("get", 2, 3, None)]) is False


def test_read_of_a_value_never_written_is_not():
    assert verdict([op("get", 0, 1, "ghost")]) is False


def test_concurrent_read_may_see_either_value():
    w = op("set", 0, 10, "a")
    assert verdict([w, op("get", 1, 2, None), op("get", 3, 4, "a")])
    # but once it saw the new value, a later read may not go back
    w = op("set", 0, 10, "a")
    assert verdict([w, op("get", 1, 2, "a"), op("get", 3, 4, None)]) is False


def test_lost_write_is_not_linearizable():
    ops = [op("set", 0, 1, "a"), op("set", 2, 3, "b"), op("get", 4, 5, "a")]
    assert verdict(ops) is False


def test_unknown_write_may_take_effect_late_or_never():
    w = op("set", 0, None, "a", outcome=UNKNOWN)
    assert verdict([w, op("get", 5, 6, None), op("get", 100, 101, "a")])
    w = op("set", 0, None, "a", outcome=UNKNOWN)
    assert verdict([w, op("get", 5, 6, None), op("get", 7, 8, None)])
    # ... but not before it was called
    w = op("set", 10, None, "a", outcome=UNKNOWN)
    assert verdict([op("get", 0, 1, "a"), w]) is False
    # ... and not twice: seen, then gone, then seen again with no other write
    w = op("set", 0, None, "a", outcome=UNKNOWN)
    assert verdict([w, op("get", 1, 2, "a"), op("remove", 3, 4, removed=True),
                    op("get", 5, 6, "a")]) is False


def test_failed_write_must_not_take_effect():
    # a failed op is left out; reading its value is a read of nothing written
    ops = [op("set", 0, 1, "a", outcome=FAIL), op("get", 2, 3, "a")]
    assert verdict(ops) is False
    assert verdict([op("set", 0, 1, "a", outcome=FAIL), op("get", 2, 3, None)])


def test_remove_answers_are_observations():
    assert verdict([op("remove", 0, 1, removed=False), op("set", 2, 3, "a"),
                    op("remove", 4, 5, removed=True), op("get", 6, 7, None)])
    assert verdict([op("remove", 0, 1, removed=True)]) is False
    assert verdict([op("set", 0, 1, "a"), op("remove", 2, 3, removed=False)]) is False
    # an unknown write nobody read can still explain a removed=True
    w = op("set", 0, None, "x", outcome=UNKNOWN)
    assert verdict([w, op("remove", 5, 6, removed=True)])


def test_keys_are_independent_and_the_bad_one_is_named():
    ops = [op("set", 0, 1, "a", key="x"), op("get", 2, 3, "a", key="x"),
           op("set", 0, 1, "b", key="y"), op("get", 2, 3, None, key="y")]
    v = check(ops)
    assert v.ok is False and v.bad_keys == ["y"]
    text = v.explain()
    assert "NOT linearizable" in text and "'y'" in text


def test_equal_times_count_as_concurrent():
    assert verdict([op("set", 0, 1, "a"), op("get", 1, 2, None)])


def test_history_round_trips_through_jsonl(tmp_path):
    ops = [op("set", 0, 1, "a"), op("get", 2, None, outcome=UNKNOWN), op("remove", 3, 4, removed=True)]
    path = save_history(tmp_path / "h.jsonl", ops, meta={"seed": 1})
    back, faults, meta = load_history(path)
    assert back == ops and faults == [] and meta["seed"] == 1


def test_a_long_concurrent_history_is_decided_quickly():
    rng = random.Random(7)
    ops = _sequential_history(rng, 2000, clients=8, unknown_rate=0.05, overlap=3.0)
    v = check(ops, time_limit=60)
    assert v.ok is True, v.explain()
    assert v.seconds < 30


# --- generated histories ------------------------------------------------------

def _sequential_history(rng: random.Random, n: int, clients: int = 4, unknown_rate: float = 0.1,
                        overlap: float = 2.0, keys: int = 3, lost_unknown_rate: float = 0.05) -> list[Op]:
    """Run ``n`` ops one after another against the model (the linearization
    order), then give each an interval around its point. Some writes become
    unknown (effect kept, return forgotten) and some unknown writes never
    take effect at all; some ops fail and take no effect."""
    states: dict[str, str | None] = {}
    ops = []
    t = 0.0
    for i in range(n):
        t += rng.uniform(0.1, 1.0)
        key = f"k{rng.randrange(keys)}"
        f = rng.choice(["set", "set", "get", "get", "remove"])
        call = t - rng.uniform(0, overlap)
        ret = t + rng.uniform(0, overlap)
        client = rng.randrange(clients)
        if f != "get" and rng.random() < lost_unknown_rate:
            ops.append(Op(i, client, "set", key, call, None, UNKNOWN, f"never{i}"))
            continue
        if rng.random() < 0.05:
            ops.append(Op(i, client, f, key, call, ret, FAIL, f"failed{i}" if f == "set" else None))
            continue
        state = states.get(key)
        if f == "set":
            value, removed = f"v{i}", None
            states[key] = value
        elif f == "get":
            value, removed = state, None
        else:
            value, removed = None, state is not None
            states[key] = None
        outcome = OK
        if f != "get" and rng.random() < unknown_rate:
            outcome, ret, removed = UNKNOWN, None, None
        ops.append(Op(i, client, f, key, call, ret, outcome, value, removed))
    return ops


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), overlap=st.floats(0, 5))
def test_histories_from_a_sequential_execution_are_linearizable(seed, n, overlap):
    ops = _sequential_history(random.Random(seed), n, overlap=overlap)
    v = check(ops, time_limit=30)
    assert v.ok is True, f"seed={seed} n={n}\n{v.explain()}"


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60), data=st.data())
def test_a_corrupted_read_in_a_sequential_history_is_caught(seed, n, data):
    # no overlap and no unknowns: the order is forced, so a read that does
    # not return the last write is a violation
    ops = _sequential_history(random.Random(seed), n, overlap=0.0, unknown_rate=0.0,
                              lost_unknown_rate=0.0)
    ops = [o for o in ops if o.outcome == OK]
    reads = [o for o in ops if o.f == "get"]
    if not reads:
        return
    victim = data.draw(st.sampled_from(reads))
    victim.value = data.draw(st.sampled_from([None, "bogus"] + [o.value for o in ops if o.f == "set"])
                             .filter(lambda v: v != victim.value))
    v = check(ops, time_limit=30)
    assert v.ok is False, f"seed={seed} n={n} victim={victim.describe()}"


def _brute_force(ops: list[Op]) -> bool:
    """Every subset of unknown ops, every order that respects real time."""
    ops = [o for o in ops if o.outcome != FAIL and not (o.f == "get" and o.outcome != OK)]
    required = [o for o in ops if o.outcome == OK]
    optional = [o for o in ops if o.outcome == UNKNOWN]
    for r in range(len(optional) + 1):
        for extra in itertools.combinations(optional, r):
            chosen = required + list(extra)
            for perm in itertools.permutations(chosen):
                ok = True
                for i, a in enumerate(perm):
                    # a may not come after an op that was called after a returned
                    if any(a.outcome == OK and b.call > a.ret for b in perm[:i]):
                        ok = False
                        break
                if not ok:
                    continue
                state = None
                for o in perm:
                    legal, state = step(state, o)
                    if not legal:
                        ok = False
                        break
                if ok:
                    return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "get", "remove"]), st.integers(0, 6), st.integers(0, 4),
                          st.sampled_from([None, "a", "b"]), st.booleans(),
                          st.sampled_from([OK, OK, OK, UNKNOWN, FAIL])),
                min_size=1, max_size=6))
def test_agrees_with_brute_force_on_small_histories(rows):
    ops = []
    for i, (f, call, length, value, removed, outcome) in enumerate(rows):
        if f == "set" and value is None:
            value = "a"
        ret = None if outcome == UNKNOWN else call + length
        ops.append(Op(i, i, f, "k", float(call), None if ret is None else float(ret), outcome,
                      None if f == "remove" else value, removed if f == "remove" and outcome == OK else None))
    assert check_key("k", ops).ok == _brute_force(ops), "\n".join(o.describe() for o in ops)
