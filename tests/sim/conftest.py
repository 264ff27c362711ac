"""``--rewrite`` (declared in tests/conftest.py) or RAFTKV_REWRITE=1 makes the
scenario tests write the actual trace into each scenario file's expected
blocks instead of comparing."""

import os

import pytest


@pytest.fixture
def rewrite(request) -> bool:
    return bool(request.config.getoption("--rewrite")) or os.environ.get("RAFTKV_REWRITE") == "1"
