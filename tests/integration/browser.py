"""The browser the dashboard tests drive: Debian's chromium through
Playwright (never `playwright install`: no browser downloads). The
``browser_page`` fixture lives in conftest.py."""

from __future__ import annotations

import os
import shutil

import pytest

from cluster import REPO

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the browser tests say why they skip
    sync_playwright = None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts" / "ui"
WAIT_MS = 30_000

needs_browser = pytest.mark.skipif(
    sync_playwright is None or not os.path.exists(CHROMIUM),
    reason=("playwright is not importable (pip install playwright; it is in the test extra)"
            if sync_playwright is None else
            f"chromium not found at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"))
