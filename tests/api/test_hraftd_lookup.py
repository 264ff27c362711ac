"""Where the mixed Go/Python tests look for hraftd: RAFTKV_HRAFTD first, and
a skip that says how to get one when it is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_mixed_tests_take_hraftd_from_raftkv_hraftd(tmp_path):
    missing = tmp_path / "my-build" / "hraftd"  # not there: the tests skip, naming where they looked
    env = {**os.environ, "RAFTKV_HRAFTD": str(missing), "HRAFTD_BIN": "/elsewhere/hraftd"}
    env.pop("RAFTKV_REQUIRE", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/integration/test_hashicorp_mixed.py"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-3000:]
    assert f"hraftd binary not found at {missing} (set RAFTKV_HRAFTD=/path/to/hraftd; README" in r.stdout, \
        r.stdout[-3000:]
    assert "/elsewhere/hraftd" not in r.stdout
