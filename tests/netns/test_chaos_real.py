"""A short mixed nemesis on the real network, judged by the linearizability checker."""

from __future__ import annotations

import pytest

from labkit import LONG

from raftkv.chaos.netnemesis import run_real_network
from raftkv.chaos.timeline import draw_timeline


pytestmark = pytest.mark.timeout(300 if LONG else 120)


def test_mixed_schedule_on_the_real_network_is_linearizable(make_cluster, tmp_path):
    make_cluster  # noqa: B018  (skips here when namespaces cannot be made)
    result = run_real_network(tmp_path / "run", duration=120 if LONG else 12, seed=15, out=tmp_path)
    png = draw_timeline(result.history, result.history.with_suffix(".png"))
    print(f"{result.summary()}\ntimeline: {png}")
    assert result.verdict.ok is True, result.verdict.explain()
    assert len(result.faults) >= 2
    assert result.counts["ok"] >= 20
