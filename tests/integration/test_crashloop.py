"""kill -9 under load, at random moments and while snapshots are written and
installed: no acknowledged write is lost (see crashloop.py; longer runs with
``scripts/crashloop.sh --cycles N``)."""

from __future__ import annotations

import os
import time

import pytest

import crashloop

pytestmark = pytest.mark.integration


def test_crash_loop_loses_no_acknowledged_write(tmp_path):
    cycles = int(os.environ.get("RAFTKV_CRASH_CYCLES", "20"))
    seed = int(os.environ.get("RAFTKV_CRASH_SEED", time.strftime("%Y%m%d")))
    summary = crashloop.run(tmp_path, cycles, seed)
    assert summary["nodes"] == 3
    assert summary["acked"] > cycles
