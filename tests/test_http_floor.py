"""scripts/http_floor.py, the servers docs/performance.md profiles against a
real node: each answers a read the way its doc says, on a port the OS chose."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "http_floor.py"


@pytest.mark.parametrize("kind", ["bare", "fastpath"])
def test_http_floor_serves_a_read(kind):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), kind, "0"], stdout=subprocess.PIPE, text=True,
                            cwd=str(SCRIPT.parents[1]))
    try:
        line = proc.stdout.readline()  # blocks until it listens (or exits)
        assert line.startswith(f"{kind} serving on 127.0.0.1:"), line
        address = line.split()[-1]
        with urllib.request.urlopen(f"http://{address}/get?key=r1&level=lease", timeout=30) as answer:
            body = json.loads(answer.read())
        assert body["key"] == "r1" and body["value"] == "v" * 64 and body["level"] == "lease"
        if kind == "fastpath":
            assert body["served_by"] == "n1" and answer.headers["X-Raftkv-Served-By"] == "n1"
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_http_floor_names_its_usage():
    run = subprocess.run([sys.executable, str(SCRIPT), "nope"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "fastpath" in run.stderr
