"""The learning page in Debian's firefox-esr (WebDriver BiDi, tests/integration/
firefox.py): the simulator draws its servers and elects a leader, the
keyboard pauses and steps, a write from the client panel is answered, and a
server crashed from its actions is drawn down while the others elect a new
leader; no JavaScript error. The Chromium tests (test_learn_page.py) cover
the page in depth; this one shows it works in a second engine."""

from __future__ import annotations

import asyncio

import pytest
from browser import ARTIFACTS
from firefox import Firefox, needs_firefox

pytestmark = pytest.mark.integration

LEADER = """(() => { const l = document.querySelector('[data-node][data-role=Leader]');
                     return l ? [l.dataset.node, Number(l.dataset.term)] : null; })()"""
FRAME = "Number(document.body.dataset.frame)"
SPACE, ESCAPE, RIGHT = " ", "\uE00C", "\uE014"


@pytest.fixture
def node(cluster):
    return cluster.add("n1", bootstrap=True).wait_ready()


@needs_firefox
def test_the_learning_page_in_firefox(node):
    asyncio.run(_in_firefox(f"http://{node.http_addr}/ui/learn?seed=1&speed=8"))


async def _in_firefox(url: str) -> None:
    async with Firefox() as ff:
        await ff.goto(url)
        await ff.wait_for("document.querySelectorAll('[data-node]').length >= 3", what="the servers")
        leader, term = await ff.wait_for(LEADER, what="a leader")
        assert await ff.evaluate("document.querySelector('input[type=range]').getAttribute('aria-label')") == "time"

        # Space pauses; the right arrow steps one frame
        await ff.evaluate("document.activeElement.blur()")
        await ff.press(SPACE)
        await ff.wait_for("document.body.dataset.playing === 'false'", what="paused")
        here = await ff.evaluate(FRAME)
        await ff.press(RIGHT)
        await ff.wait_for(f"{FRAME} === {here + 1}", what="one step on")

        # a write from the client panel, played until it is answered
        await ff.click("#c-write")
        await ff.evaluate("document.activeElement.blur()")
        await ff.press(SPACE)
        await ff.wait_for("document.querySelector('#client-list li.ok')", what="the write answered")

        # crash the leader from its actions: drawn down, and the others elect a new one
        await ff.click(f"[data-node={leader}]")
        await ff.wait_for("!document.querySelector('#popover').hidden", what="the server's actions")
        await ff.click("#pop-actions button[data-verb=crash]")
        await ff.wait_for(f"document.querySelector('[data-node={leader}]').dataset.role === 'Down'",
                          what=f"{leader} drawn down")
        await ff.press(ESCAPE)
        await ff.evaluate("document.body.dataset.playing === 'true' || (document.querySelector('#play').click(), 1)")
        new_leader = await ff.wait_for(
            f"(() => {{ const l = {LEADER}; return l && l[0] !== '{leader}' && l[1] > {term} ? l : null; }})()",
            timeout=60, what="a new leader")
        assert new_leader[0] != leader

        await ff.screenshot(ARTIFACTS / "learn-firefox.png")
        assert not ff.errors, ff.errors
