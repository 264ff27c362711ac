"""Fixtures for the real-process tests: a Cluster per test whose processes
are always reaped, and whose node logs are printed when the test fails."""

from __future__ import annotations

import pytest

from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, sync_playwright
from cluster import Cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path)
    yield c
    c.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for node in c.nodes.values():
            print(f"\n===== {node.id} ({node.log_path}) =====\n{node.log()[-6000:]}")


@pytest.fixture
def browser_page():
    """A chromium page; ``page.errors`` collects the page's script errors."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.errors = errors
            yield page
        finally:
            browser.close()
