"""``raftkv lab open`` in a real browser (Playwright driving Debian's
chromium): a planted bug's failing run opens in the learning page at the
step that broke the invariant, marked with it, the learner's calls in the
narration; the time slider steps back through the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from browser import ARTIFACTS, WAIT_MS, needs_browser
from cluster import REPO

pytestmark = pytest.mark.integration

sys.path.insert(0, str(REPO / "tests" / "lab"))
from lab_planted import PLANTED  # noqa: E402


@pytest.fixture
def opened(tmp_path):
    """``raftkv lab open`` on a planted bug, serving on a free port; its URL."""
    exercise, source, _ = PLANTED["two votes in one term"]
    (tmp_path / f"{exercise}.py").write_text(source, encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "raftkv", "lab", "open", str(tmp_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"open (http://\S+)", line)
            if found:
                yield found.group(1), "".join(seen)
                break
        else:
            pytest.fail("raftkv lab open printed no URL: " + "".join(seen))
        if not seen or not re.search(r"open http", seen[-1]):
            pytest.fail("raftkv lab open printed no URL: " + "".join(seen))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@needs_browser
def test_a_failure_opens_at_the_step_that_broke(opened, browser_page):
    url, printed = opened
    broke_at = int(re.search(r"at the last frame \((\d+)\)", printed).group(1))
    page = browser_page
    page.goto(url)
    page.wait_for_selector("#narration .broke", timeout=WAIT_MS)
    assert page.evaluate("() => document.body.dataset.frame") == str(broke_at)
    marked = page.text_content("#narration .broke")
    assert "Election Safety" in marked and "a term has at most one leader" in marked
    assert "broke Election Safety" in page.text_content("#say")
    page.screenshot(path=str(ARTIFACTS / "lab-open-broke.png"), full_page=True)
    # step back to a call of the learner's grant_vote: no mark there, the call in the narration
    calls = page.evaluate("""async (id) => {
        const r = await fetch(`/ui/learn/sim/${id}/frames?from=0&count=2000`).then(r => r.json());
        return r.frames.filter(f => f.narration.some(s => s.call)).map(f => f.i); }""",
                          re.search(r"recording=([^&]+)", url).group(1))
    assert calls and calls[-1] < broke_at
    page.locator("input[type=range][aria-label=time]").evaluate(
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }", calls[-1])
    page.wait_for_function("(i) => document.body.dataset.frame === String(i)", arg=calls[-1], timeout=WAIT_MS)
    page.wait_for_selector("#narration .call", timeout=WAIT_MS)
    assert "calls your grant_vote" in page.text_content("#narration .call")
    assert page.locator("#narration .broke").count() == 0
    assert not page.errors, page.errors
