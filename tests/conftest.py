"""Suite-wide options, and the check that a run which must exercise a
capability (Docker, a browser, network namespaces, hraftd, tmpfs mounts)
did not skip the tests that need it."""

from __future__ import annotations

import os

import pytest
from required import required_but_skipped

_skipped: list[tuple[str, str]] = []


def pytest_addoption(parser):
    parser.addoption("--rewrite", action="store_true", help="regenerate golden scenario traces")


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    required = [name.strip() for name in os.environ.get("RAFTKV_REQUIRE", "").split(",") if name.strip()]
    if not required:
        return
    missing = required_but_skipped(required, _skipped)
    if missing:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "RAFTKV_REQUIRE: tests that must run here were skipped", red=True)
            for line in missing:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
