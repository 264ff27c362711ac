"""The dashboard: /ui in a real browser (Playwright driving Debian's
chromium) on a live 3-node cluster, and the /debug views it is built on.

Screenshots go to ``test-artifacts/ui/`` (gitignored)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from browser import ARTIFACTS, WAIT_MS, needs_browser
from cluster import wait_until

pytestmark = pytest.mark.integration

CARDS = """() => Array.from(document.querySelectorAll('[data-testid=node-card]'))
                 .map(e => [e.dataset.node, e.dataset.role, e.dataset.up])"""


def _cards(page) -> list[list[str]]:
    return page.evaluate(CARDS)


@needs_browser
def test_dashboard_follows_failover_and_a_write_from_the_page(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)
    for i in range(3):
        n1.set(f"k{i}", str(i))
    leader = cluster.leader()
    viewer = next(n for n in cluster.running() if n.id != leader.id)  # the page survives the kill

    page.goto(f"http://{viewer.http_addr}/ui")
    page.wait_for_function(
        """() => { const c = Array.from(document.querySelectorAll('[data-testid=node-card]'));
                   return c.length === 3 && c.every(e => e.dataset.up === 'true')
                          && c.filter(e => e.dataset.role === 'Leader').length === 1; }""",
        timeout=WAIT_MS)
    cards = _cards(page)
    assert sorted(c[0] for c in cards) == ["n1", "n2", "n3"]
    assert [c[0] for c in cards if c[1] == "Leader"] == [leader.id]
    # every node's log strip shows the writes, and the merged events came from all three
    page.wait_for_function(
        """(n) => Array.from(document.querySelectorAll('[data-testid=strip]'))
                   .every(s => s.querySelector(`[data-index="${n}"]`))""",
        arg=leader.status()["commit_index"], timeout=WAIT_MS)
    page.wait_for_function(
        """() => new Set(Array.from(document.querySelectorAll('#events tbody tr')).map(r => r.dataset.node)).size === 3""",
        timeout=WAIT_MS)
    # a quick filter leaves only its lines
    page.click("button.q[data-q='election won']")
    # the table re-renders on the next frame (and as events stream in): wait for it
    page.wait_for_function(
        """() => { const m = Array.from(document.querySelectorAll('#events tbody td.message'))
                                .map(e => e.textContent);
                   return m.length > 0 && m.every(t => t === 'election won'); }""",
        timeout=WAIT_MS)
    messages = page.eval_on_selector_all("#events tbody td.message", "els => els.map(e => e.textContent)")
    assert messages and all(m == "election won" for m in messages), messages
    page.click("button.q[data-q='election won']")
    # no node reports fault injection here, so its controls stay hidden
    faults = any(n.status().get("fault_injection") for n in cluster.running())
    assert page.is_hidden("#faults") != faults
    page.screenshot(path=str(ARTIFACTS / "01-cluster.png"), full_page=True)

    leader.kill()
    page.wait_for_function(
        """(dead) => { const c = Array.from(document.querySelectorAll('[data-testid=node-card]'));
                       const d = c.find(e => e.dataset.node === dead);
                       return d && d.dataset.up === 'false'
                              && c.filter(e => e.dataset.role === 'Leader' && e.dataset.up === 'true').length === 1; }""",
        arg=leader.id, timeout=WAIT_MS)
    new_leader = cluster.leader()
    assert new_leader.id != leader.id
    page.wait_for_function(
        """(id) => document.querySelector(`[data-testid=node-card][data-node="${id}"]`).dataset.role === 'Leader'""",
        arg=new_leader.id, timeout=WAIT_MS)
    # the election is in the table, after the dead leader's last lines, and
    # stays there while the new leader keeps failing to reach the dead one
    election_won = f"#events tbody tr[data-node='{new_leader.id}']:not(.note)"
    page.wait_for_function(
        """(sel) => Array.from(document.querySelectorAll(sel))
                         .some(r => r.querySelector('td.message').textContent === 'election won')""",
        arg=election_won, timeout=WAIT_MS)
    assert page.eval_on_selector_all(f"#events tbody tr[data-node='{leader.id}']:not(.note)", "els => els.length")
    time.sleep(5)
    rows = page.eval_on_selector_all("#events tbody tr", "els => els.map(e => [e.dataset.node, "
                                     "e.querySelector('td.message').textContent])")
    assert [new_leader.id, "election won"] in rows, rows[:40]
    assert any(node == leader.id for node, _ in rows), "the dead leader's last lines left the table"
    # the new leader's retries of the dead peer are counted, not listed one by one
    retries = page.eval_on_selector_all(
        f"#events tbody tr[data-node='{new_leader.id}']",
        """els => els.filter(e => e.querySelector('td.message').textContent.startsWith('failed to heartbeat to'))
                    .map(e => Number(e.dataset.count))""")
    assert len(retries) <= max(2, sum(retries) // 2), (retries, rows[:40])
    page.screenshot(path=str(ARTIFACTS / "02-failover.png"), full_page=True)

    # the killed node comes back; a write from the page reaches all three strips
    leader.start().wait_ready()
    page.wait_for_function(
        """(id) => document.querySelector(`[data-testid=node-card][data-node="${id}"]`).dataset.up === 'true'""",
        arg=leader.id, timeout=WAIT_MS)
    page.fill("#kv-key", "from-the-page")
    page.fill("#kv-value", "hello")
    page.click("#kv-write")
    page.wait_for_function("() => document.querySelector('#op-result').dataset.index", timeout=WAIT_MS)
    index = int(page.eval_on_selector("#op-result", "e => e.dataset.index"))
    assert "from-the-page=hello" in page.text_content("#op-result")
    page.wait_for_function(
        """(n) => { const s = Array.from(document.querySelectorAll('[data-testid=strip]'));
                    return s.length === 3 && s.every(x => x.querySelector(`[data-index="${n}"][data-term]`)); }""",
        arg=index, timeout=WAIT_MS)
    terms = page.eval_on_selector_all(f"[data-testid=strip] [data-index='{index}']",
                                      "els => els.map(e => e.dataset.term)")
    assert len(terms) == 3 and len(set(terms)) == 1 and int(terms[0]) == new_leader.status()["term"]
    wait_until(lambda: leader.value("from-the-page", stale=True) == "hello", what="the write on the restarted node")
    page.click("#kv-read")
    page.wait_for_function("() => document.querySelector('#op-result').textContent.includes('from-the-page = hello')",
                           timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "03-write.png"), full_page=True)
    assert not page.errors, page.errors


@needs_browser
def test_replay_steps_through_a_simulator_scenario(cluster, browser_page):
    page = browser_page
    node = cluster.add("n1", bootstrap=True).wait_ready()
    page.goto(f"http://{node.http_addr}/ui?scenario=leader-crash")
    page.wait_for_function("() => document.querySelector('#replay-pos').textContent.startsWith('step 1 /')",
                           timeout=WAIT_MS)
    total = int(page.text_content("#replay-pos").split("/")[1])
    assert total > 10
    assert page.is_hidden("#controls")
    # step forward until the scenario's first leader shows, then to the end
    page.click("#replay-next")
    page.wait_for_function("() => document.querySelector('#replay-pos').textContent.startsWith('step 2 /')",
                           timeout=WAIT_MS)
    page.eval_on_selector("#replay-slider", f"(e) => {{ e.value = '{total - 1}'; e.dispatchEvent(new Event('input')); }}")
    page.wait_for_function(f"() => document.querySelector('#replay-pos').textContent.startsWith('step {total} /')",
                           timeout=WAIT_MS)
    cards = _cards(page)
    assert len(cards) == 3
    assert [c for c in cards if c[1] == "Leader" and c[2] == "true"], cards
    messages = page.eval_on_selector_all("#events tbody td.message", "els => els.map(e => e.textContent)")
    assert "election won" in messages
    page.screenshot(path=str(ARTIFACTS / "04-replay.png"), full_page=True)
    assert not page.errors, page.errors


STEP_VIEW = """() => ({
    pos: document.querySelector('#replay-pos').textContent,
    headline: document.querySelector('[data-testid=replay-headline]').textContent,
    changes: Array.from(document.querySelectorAll('#replay-step .change'))
                  .map(e => [e.dataset.node, e.dataset.role, e.textContent]),
    cards: Object.fromEntries(Array.from(document.querySelectorAll('[data-testid=node-card]'))
                  .map(e => [e.dataset.node, [e.dataset.role, e.querySelector('.term').textContent]])),
})"""


@needs_browser
def test_replay_controls_are_labelled_and_the_narration_agrees_with_the_cards(cluster, browser_page):
    page = browser_page
    node = cluster.add("n1", bootstrap=True).wait_ready()
    page.goto(f"http://{node.http_addr}/ui?scenario=leader-crash")
    page.wait_for_function("() => document.querySelector('#replay-pos').textContent.startsWith('step 1 /')",
                           timeout=WAIT_MS)
    # every control says what it does, in words and to assistive technology
    for sel, words in (("#replay-first", "first"), ("#replay-prev", "back"), ("#replay-play", "play"),
                       ("#replay-next", "forward")):
        text = page.text_content(sel).lower()
        label = page.get_attribute(sel, "aria-label").lower()
        title = page.get_attribute(sel, "title").lower()
        assert words in text and words in label and title, (sel, text, label, title)
    assert page.get_by_role("button", name="step forward").count() == 1
    assert page.get_by_role("button", name="step back").count() == 1
    page.click("#replay-play")
    page.wait_for_function("() => document.querySelector('#replay-play').getAttribute('aria-label') === 'pause'",
                           timeout=WAIT_MS)
    assert "Pause" in page.text_content("#replay-play")
    assert page.get_attribute("#replay-play", "aria-pressed") == "true"
    page.click("#replay-play")
    page.wait_for_function("() => document.querySelector('#replay-play').getAttribute('aria-label') === 'play'",
                           timeout=WAIT_MS)

    # step through the whole scenario from the first step: what the narration
    # says changed is what the cards show
    page.click("#replay-first")
    total = int(page.text_content("#replay-pos").split("/")[1])
    saw = {"crash": False, "pre-vote": False, "leader": False, "why": False}
    for i in range(1, total + 1):
        if i > 1:
            page.click("#replay-next")
        page.wait_for_function(f"() => document.querySelector('#replay-pos').textContent.startsWith('step {i} /')",
                               timeout=WAIT_MS)
        view = page.evaluate(STEP_VIEW)
        for node_id, role, text in view["changes"]:
            card_role, card_term = view["cards"][node_id]
            assert card_role == role, (i, view)
            if " \u2192 " in text and "term " in text:
                assert text.split("term ")[1].split(" \u2192 ")[1].split(",")[0] == card_term, (i, view)
            if "\u2192 Leader" in text:
                saw["leader"] = True
        if view["headline"].startswith("n2 crashes"):
            saw["crash"] = True
            assert view["cards"]["n2"][0] == "Down" and ["n2", "Down", "n2: is down"] in view["changes"], view
        if "(pre-vote)" in view["headline"]:
            saw["pre-vote"] = True
        for why in page.eval_on_selector_all("[data-testid=replay-why]", "els => els.map(e => e.textContent)"):
            # a candidate's card keeps its old term during pre-vote, and the page says why
            assert "with pre-vote a candidate first asks whether it would win term" in why, why
            saw["why"] = True
        assert view["headline"] and not view["headline"].startswith(("Step ", "Timeout")), view
    assert all(saw.values()), saw
    page.screenshot(path=str(ARTIFACTS / "07-replay-narration.png"), full_page=True)
    assert not page.errors, page.errors


# --- the page reaches one node only ---------------------------------------------------------

def _only_origin(page, origin: str) -> list[str]:
    """Let the page talk to ``origin`` and nothing else, as a browser outside
    a Docker network, a tunnel or a proxy would: every other request fails.
    Returns the list the refused URLs go to."""
    refused: list[str] = []

    def gate(route):
        url = route.request.url
        if url.startswith(origin + "/"):
            route.continue_()
        else:
            refused.append(url)
            route.abort("addressunreachable")
    page.route("**/*", gate)
    return refused


CONN = """(id) => { const c = document.querySelector(`[data-testid=node-card][data-node="${id}"]`);
                    return c ? c.dataset.conn : null; }"""


@needs_browser
def test_dashboard_reaches_every_member_through_the_serving_node(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)
    index = n1.set("before", "kill")["index"]
    cluster.wait_applied(index)
    # The browser knows n1 as localhost:PORT while the members know it as
    # 127.0.0.1:PORT: the page must use its own origin, not the registry's
    # addresses, even for the node that served it.
    origin = f"http://localhost:{n1.http_port}"
    refused = _only_origin(page, origin)
    page.goto(f"{origin}/ui")
    page.wait_for_function(
        """() => { const c = Array.from(document.querySelectorAll('[data-testid=node-card]'));
                   return c.length === 3 && c.every(e => e.dataset.up === 'true' && e.dataset.conn === 'up')
                          && c.filter(e => e.dataset.role === 'Leader').length === 1; }""",
        timeout=WAIT_MS)
    assert page.text_content("#conn").startswith("3/3 nodes streaming")
    leader = cluster.leader()
    roles = {c[0]: c[1] for c in _cards(page)}
    assert roles == {n.id: ("Leader" if n.id == leader.id else "Follower") for n in cluster.running()}, roles
    page.wait_for_function(
        """(n) => { const s = Array.from(document.querySelectorAll('[data-testid=strip]'));
                    return s.length === 3 && s.every(x => x.querySelector(`[data-index="${n}"][data-term]`)); }""",
        arg=index, timeout=WAIT_MS)
    page.wait_for_function(
        """() => new Set(Array.from(document.querySelectorAll('#events tbody tr')).map(r => r.dataset.node)).size === 3""",
        timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "05-relayed.png"), full_page=True)

    # kill a follower that is not the serving node
    victim = next(n for n in cluster.running() if n.id not in (leader.id, n1.id))
    survivors = [n.id for n in cluster.running() if n.id != victim.id]
    victim_rows = f"#events tbody tr[data-node='{victim.id}']:not(.note)"
    last_words = page.eval_on_selector_all(victim_rows, "els => els.map(e => e.dataset.seq)")
    assert last_words, "the victim's events were in the table before the kill"
    victim.kill()
    page.wait_for_function(
        """(id) => { const c = document.querySelector(`[data-testid=node-card][data-node="${id}"]`);
                     return c.dataset.up === 'false' && c.dataset.conn === 'unreachable'
                            && c.dataset.role === 'Unreachable'; }""",
        arg=victim.id, timeout=WAIT_MS)
    # the table marks where the page lost the node
    page.wait_for_function(
        """(id) => Array.from(document.querySelectorAll(`#events tbody tr.note[data-node="${id}"]`))
                        .some(r => r.textContent.includes("lost this node's stream"))""",
        arg=victim.id, timeout=WAIT_MS)
    # the survivors keep streaming: a write after the kill reaches both their strips
    after = leader.set("after", "kill")["index"]
    page.wait_for_function(
        """([ids, n]) => ids.every(id => document.querySelector(
                `[data-testid=strip][data-strip="${id}"] [data-index="${n}"][data-term]`))""",
        arg=[survivors, after], timeout=WAIT_MS)
    for node_id in survivors:
        assert page.evaluate(CONN, node_id) == "up"
    assert page.text_content("#conn").startswith("2/3 nodes streaming")
    # ... and the dead node's last events are still in the table, all of them
    kept = page.eval_on_selector_all(victim_rows, "els => els.map(e => e.dataset.seq)")
    assert set(last_words) <= set(kept), (last_words, kept)
    page.screenshot(path=str(ARTIFACTS / "06-follower-killed.png"), full_page=True)
    assert refused == [], f"the page tried to reach other origins: {refused[:5]}"
    assert not page.errors, page.errors


@needs_browser
def test_dashboard_says_connecting_before_a_nodes_first_event(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)
    n3 = cluster["n3"]
    origin = f"http://localhost:{n1.http_port}"
    refused = _only_origin(page, origin)
    # A frozen n3 accepts the relay's connection but says nothing: the page
    # must show it as connecting, not as unreachable, until it has word.
    n3.pause()
    try:
        page.goto(f"{origin}/ui")
        page.evaluate(
            """() => { window.seen = []; setInterval(() => {
                   const c = document.querySelector('[data-testid=node-card][data-node="n3"]');
                   if (c && window.seen[window.seen.length - 1] !== c.dataset.conn) window.seen.push(c.dataset.conn);
               }, 20); }""")
        page.wait_for_function(CONN.replace("(id) =>", "() => ((id) =>") + ")('n3') === 'connecting'",
                               timeout=WAIT_MS)
        card = page.text_content("[data-testid=node-card][data-node='n3']")
        assert "connecting…" in card and "nreachable" not in card, card
        assert "connecting" in page.text_content("#conn")
        page.screenshot(path=str(ARTIFACTS / "08-connecting.png"))
    finally:
        n3.resume()
    page.wait_for_function(CONN.replace("(id) =>", "() => ((id) =>") + ")('n3') === 'up'", timeout=WAIT_MS)
    # the 20 ms sampler may not have run since the card turned up
    page.wait_for_function("() => window.seen.includes('up')", timeout=WAIT_MS)
    seen = page.evaluate("() => window.seen")
    assert seen[:2] == ["connecting", "up"], seen
    assert refused == [] and not page.errors, (refused, page.errors)


# --- the routes the page is built on (no browser) ------------------------------------------

def _read_events(url: str, wanted: set[str], timeout: float = 15.0) -> dict[str, list]:
    """Read a server-sent-events stream until each wanted event type was seen."""
    seen: dict[str, list] = {}
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        event = None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                seen.setdefault(event, []).append(json.loads(line[6:]))
                if wanted <= set(seen):
                    return seen
    raise AssertionError(f"stream ended before {wanted - set(seen)}")


def test_debug_views_stream_status_log_tail_and_records(cluster):
    n1 = cluster.form(3)
    index = n1.set("seen", "yes")["index"]
    n2 = cluster["n2"]
    cluster.wait_applied(index)

    events = _read_events(f"http://{n2.http_addr}/debug/stream", {"hello", "status", "log"})
    hello = events["hello"][0]
    assert hello["id"] == "n2" and hello["http"] == n2.http_addr and "boot" in hello
    status = events["status"][0]
    assert status["id"] == "n2" and status["state"] == "Follower"
    tail = status["log"]
    assert tail["last"] >= index and [index, n1.status()["term"], "command"] in tail["entries"]
    records = [r for batch in events["log"] for r in batch]
    assert any(r["message"] == "entering follower state" and r["node"] == "n2" for r in records)
    assert all(set(r) == {"seq", "node", "time", "level", "logger", "message", "fields"} for r in records)

    # the same records as JSON, after a sequence number
    resp = n2.get("/debug/events")
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    body = resp.json()
    assert body["node"] == "n2" and body["events"] and body["last_seq"] == body["events"][-1]["seq"]
    later = n2.get("/debug/events", since=str(body["last_seq"])).json()["events"]
    assert all(r["seq"] > body["last_seq"] for r in later)
    assert n2.get("/debug/events", since="x").status == 400

    log = n2.get("/debug/log", **{"from": str(index)}).json()
    assert log["entries"][0][:2] == [index, n1.status()["term"]] and log["commit_index"] >= index
    # CORS on the read-only views a page on another node reads, not on writes
    assert n2.get("/status").headers.get("Access-Control-Allow-Origin") == "*"
    assert n2.get("/peers").headers.get("Access-Control-Allow-Origin") == "*"
    assert "Access-Control-Allow-Origin" not in n2.get("/set", key="a", value="b").headers


def test_ui_files_replay_json_and_fault_relay(cluster):
    n1 = cluster.add("n1", bootstrap=True).wait_ready()
    wait_until(n1.is_leader, what="n1 to lead")
    page = n1.get("/ui")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    assert "/ui/static/dashboard.js" in html and "http://" not in html and "https://" not in html
    for name in ("dashboard.js", "dashboard.css"):
        resp = n1.get(f"/ui/static/{name}")
        assert resp.status == 200 and b"https://" not in resp.body
    assert n1.get("/ui/static/../server.py").status == 404

    names = n1.get("/ui/replay").json()["scenarios"]
    assert "leader-crash" in names and "first-election" in names
    replay = n1.get("/ui/replay", scenario="first-election").json()
    assert replay["passed"] and replay["nodes"] == ["n1", "n2", "n3"]
    last = replay["steps"][-1]["nodes"]
    assert sum(1 for s in last if s["role"] == "Leader") == 1
    assert any(l["message"] == "election won" for s in replay["steps"] for l in s["logs"])
    bad = n1.get("/ui/replay", scenario="nope")
    assert bad.status == 400 and bad.json()["param"] == "scenario"

    # fault injection is relayed to the named node's /debug/faults; without
    # that route the answer says so instead of failing obscurely
    resp = n1.request("POST", "/ui/faults", params={"node": "n1"}, json_body={"drop": []})
    if n1.status().get("fault_injection"):
        assert resp.status == 200, resp
        assert n1.request("DELETE", "/ui/faults", params={"node": "n1"}).status == 200
    else:
        assert resp.status in (403, 404, 405), resp
        if resp.status != 403:  # 403: the route exists but fault injection is off
            assert resp.json()["error"] == "fault injection is not available on n1"
    assert n1.request("POST", "/ui/faults", params={"node": "zz"}, json_body={}).status == 400


def _sse(url: str, headers: dict | None = None, count: int = 3, timeout: float = 15.0) -> list[dict]:
    """The first ``count`` events of a server-sent-events stream, each as
    {"event", "id", "retry", "data"}."""
    events: list[dict] = []
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        current: dict = {}
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if not line:
                if current:
                    events.append(current)
                    current = {}
                    if len(events) == count:
                        break
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events


def test_ui_stream_relays_another_members_stream(cluster):
    n1 = cluster.form(3)
    n2, n3 = cluster["n2"], cluster["n3"]
    cluster.wait_applied(n1.set("relayed", "yes")["index"])
    base = f"http://{n1.http_addr}/ui/stream"

    # when the page goes away, n1 lets go of n2's stream too: n2 counts it answered
    def streams_answered() -> int:
        text = n2.get("/metrics").body.decode()
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("raftkv_http_requests_total{") and 'route="/debug/stream"' in line)
    before = streams_answered()
    assert _sse(f"{base}?node=n2", count=2)[0]["data"]["id"] == "n2"
    wait_until(lambda: streams_answered() == before + 1, timeout=10, what="n2's stream to end")

    # n1's own stream, and n2's through n1: the same events n2 sends itself
    own = _sse(f"{base}?node=n1", count=2)
    assert own[0]["event"] == "hello" and own[0]["data"]["id"] == "n1"
    relayed = _sse(f"{base}?node=n2", count=3)
    assert relayed[0]["event"] == "hello" and relayed[0]["data"]["id"] == "n2"
    assert relayed[1]["event"] == "status" and relayed[1]["data"]["id"] == "n2"
    assert relayed[1]["data"]["state"] == "Follower"
    # events keep coming as n2 sends them (a status at least every second)
    statuses = [e for e in _sse(f"{base}?node=n2", count=6) if e["event"] == "status"]
    assert len(statuses) >= 3

    # Last-Event-ID reaches n2: the log resumes right after the given record
    last = n2.get("/debug/events").json()["last_seq"]
    assert last >= 3
    batch = next(e for e in _sse(f"{base}?node=n2", {"Last-Event-ID": str(last - 2)}, count=3)
                 if e["event"] == "log")
    assert batch["data"][0]["seq"] == last - 1 and batch["data"][0]["node"] == "n2"
    assert int(batch["id"]) == batch["data"][-1]["seq"]

    assert n1.get("/ui/stream", node="zz").status == 400

    # a member that cannot be reached: one "unreachable" event that says why,
    # as an ordinary event stream so the browser tries again by itself
    n3.kill()
    (event,) = _sse(f"{base}?node=n3", count=1)
    assert event["event"] == "unreachable" and event["retry"] == "2000"
    assert event["data"]["node"] == "n3" and event["data"]["http"] == n3.http_addr
    assert event["data"]["error"] == f"cannot reach n3 at {n3.http_addr}: connection refused"


# --- the page outlives the node that served it ----------------------------------------------

BANNER = "[data-testid=watch-banner]"


def _all_up(page, ids: list[str]) -> None:
    page.wait_for_function(
        """(ids) => ids.every(id => { const c = document.querySelector(`[data-testid=node-card][data-node="${id}"]`);
                                     return c && c.dataset.up === 'true' && c.dataset.conn === 'up'; })""",
        arg=ids, timeout=WAIT_MS)


@needs_browser
def test_dashboard_carries_on_through_another_member_when_its_node_dies(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)
    assert cluster.leader().id == "n1"
    term = n1.status()["term"]
    # opened as the demo says, by name, while the members know n1 as 127.0.0.1:PORT
    origin = f"http://localhost:{n1.http_port}"
    page.goto(f"{origin}/ui")
    _all_up(page, ["n1", "n2", "n3"])
    assert _cards(page)[0][:2] == ["n1", "Leader"]
    assert page.is_hidden(BANNER)
    page.evaluate(  # every role each card shows from now on, the first look before the kill
        """() => { window.roles = {};
                   const look = () => { for (const c of document.querySelectorAll('[data-testid=node-card]'))
                       (window.roles[c.dataset.node] = window.roles[c.dataset.node] || new Set()).add(c.dataset.role); };
                   look(); setInterval(look, 20); }""")

    n1.kill()
    page.wait_for_function(
        """(sel) => { const b = document.querySelector(sel);
                      return b && !b.hidden && b.dataset.state === 'moved' && b.dataset.down === 'n1'; }""",
        arg=BANNER, timeout=2 * WAIT_MS)
    via = page.get_attribute(BANNER, "data-via")
    assert via in ("n2", "n3"), via
    banner = page.text_content(BANNER)
    assert f"n1 is down; now watching through {via}" in " ".join(banner.split()), banner
    assert f"watching through {via}" in page.text_content("#served-by")

    # n2 and n3 stream again, straight from the member the page now reads
    _all_up(page, ["n2", "n3"])
    new_leader = cluster.leader(timeout=30)
    assert new_leader.id in ("n2", "n3") and new_leader.status()["term"] > term
    page.wait_for_function(
        """([id, term]) => { const c = document.querySelector(`[data-testid=node-card][data-node="${id}"]`);
                             return c.dataset.role === 'Leader' && c.dataset.up === 'true'
                                    && Number(c.querySelector('.term').textContent) > term; }""",
        arg=[new_leader.id, term], timeout=WAIT_MS)
    # the election is in the table: a candidacy and its win, in the new leader's words
    page.wait_for_function(
        """(id) => { const m = Array.from(document.querySelectorAll(`#events tbody tr[data-node="${id}"]:not(.note) td.message`))
                                  .map(e => e.textContent);
                     return m.includes('entering candidate state') && m.includes('election won'); }""",
        arg=new_leader.id, timeout=WAIT_MS)
    # and n1's card says why it is gone, as the member the page reads through sees it
    page.wait_for_function(
        """() => { const c = document.querySelector('[data-testid=node-card][data-node="n1"]');
                   return c.dataset.role === 'Unreachable' && /cannot reach n1 at/.test(c.textContent); }""",
        timeout=WAIT_MS)
    roles = page.evaluate("() => Object.fromEntries(Object.entries(window.roles).map(([k, v]) => [k, [...v]]))")
    assert {"Follower", "Leader"} <= set(roles[new_leader.id]), roles
    # writes go through the node that served the page: the banner points at the new one's page
    assert page.is_disabled("#kv-write") and page.is_disabled("#transfer")
    link = page.get_attribute(f"{BANNER} a", "href")
    assert link and link.endswith("/ui") and str(cluster[via].http_port) in link, link
    page.screenshot(path=str(ARTIFACTS / "09-origin-failover.png"), full_page=True)

    # n1 comes back: the page may stay where it is, and shows n1 again
    n1.start().wait_ready()
    _all_up(page, ["n1", "n2", "n3"])
    assert page.get_attribute(BANNER, "data-via") == via
    assert not page.errors, page.errors


@needs_browser
def test_dashboard_says_in_words_when_the_browser_reaches_no_other_member(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)
    origin = f"http://localhost:{n1.http_port}"
    refused = _only_origin(page, origin)  # as a browser that reaches n1 alone (a tunnel to one port)
    page.goto(f"{origin}/ui")
    _all_up(page, ["n1", "n2", "n3"])

    n1.kill()
    page.wait_for_function(
        """(sel) => { const b = document.querySelector(sel);
                      return b && !b.hidden && b.dataset.state === 'blind' && b.dataset.down === 'n1'; }""",
        arg=BANNER, timeout=2 * WAIT_MS)
    banner = " ".join(page.text_content(BANNER).split())
    assert "n1 is down" in banner and "cannot reach any other member" in banner, banner
    for node in (cluster["n2"], cluster["n3"]):
        port = node.http_port
        assert (f"{node.id} at http://127.0.0.1:{port} or http://localhost:{port}: this browser cannot connect to it"
                in banner), banner
    assert "not reachable from this browser (Docker, a tunnel or a proxy)" in banner, banner
    # no card claims a node is unreachable: the browser only cannot see them
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('[data-testid=node-card]'))
                      .every(c => c.dataset.conn === 'blind' && c.dataset.role === 'No view')""",
        timeout=WAIT_MS)
    card = page.text_content("[data-testid=node-card][data-node='n2']")
    assert "Unreachable" not in card and "this browser cannot read it" in card, card
    assert page.text_content("#conn") == "no member answers this browser"
    assert refused, "the page tried the other members"
    page.screenshot(path=str(ARTIFACTS / "10-origin-lost-no-route.png"), full_page=True)

    # n1 back: the page reads through it again, and the banner goes
    n1.start().wait_ready()
    page.wait_for_function("(sel) => document.querySelector(sel).hidden", arg=BANNER, timeout=2 * WAIT_MS)
    _all_up(page, ["n1", "n2", "n3"])
    assert not page.is_disabled("#kv-write")
    assert not page.errors, page.errors


# --- raftkv's own writes in the event table -------------------------------------------------

def _applied(node: str, seq: int, fields: list[list[str]]) -> dict:
    return {"seq": seq, "node": node, "time": 1000 + seq / 10, "level": "DEBUG", "logger": "fsm",
            "message": "applied write", "fields": [["index", str(seq)], ["term", "2"], *fields]}


def _register(node: str, seq: int, who: str) -> dict:
    return _applied(node, seq, [["op", "register-http"], ["node", who], ["http", f"127.0.0.1:80{who[-1]}"],
                                ["internal", "true"]])


def _user(node: str, seq: int, key: str) -> dict:
    return _applied(node, seq, [["op", "set"], ["key", key], ["size", "5"]])


FOLD = """(events) => foldRepeats(events).map(r => [internalLabel(r.last), r.count,
                                                  r.last.fields.find(f => f[0] === 'key' || f[0] === 'node')[1]])"""


@needs_browser
def test_raftkvs_own_writes_are_labelled_and_never_fold_with_the_users(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)  # at DEBUG: every node logs each member's registration
    page.goto(f"http://{n1.http_addr}/ui")

    # the folding on its own: the user's write between registrations keeps its row
    rows = page.evaluate(FOLD, [_register("n1", 1, "n2"), _user("n1", 2, "hello"), _register("n1", 3, "n3"),
                                _register("n1", 4, "n2"), _register("n1", 5, "n3")])
    assert rows == [["registered n2's HTTP address (127.0.0.1:802)", 2, "n2"], [None, 1, "hello"],
                    ["registered n3's HTTP address (127.0.0.1:803)", 2, "n3"]], rows
    forgot = _applied("n1", 7, [["op", "unregister-http"], ["node", "n4"], ["internal", "true"]])
    other = _applied("n1", 8, [["op", "set"], ["key", "\x00raftkv/x"], ["internal", "true"]])
    labels = page.evaluate("(evs) => evs.map(internalLabel)", [forgot, other, _user("n1", 9, "k")])
    assert labels == ["forgot n4's HTTP address (no longer a member)", "raftkv's own write: set \x00raftkv/x", None]

    # live: the registrations are labelled and dimmed, the user's write is its own row
    index = n1.set("hello", "world")["index"]
    cluster.wait_applied(index)
    own = "#events tbody tr.internal[data-node='n1'][data-internal='register-http']"
    page.wait_for_function("(sel) => document.querySelectorAll(sel).length >= 3", arg=own, timeout=WAIT_MS)
    labels = page.eval_on_selector_all(own, "els => els.map(e => e.querySelector('td.message').textContent)")
    assert {f"registered {n}'s HTTP address (127.0.0.1:{cluster[n].http_port})" for n in ("n1", "n2", "n3")} \
        <= {label.split(" \u00D7")[0].strip() for label in labels}, labels
    page.wait_for_function(
        """(index) => Array.from(document.querySelectorAll("#events tbody tr[data-node='n1']:not(.internal)"))
                          .some(r => r.querySelector('td.message').textContent.startsWith('applied write')
                                     && r.querySelector('td.fields').textContent.includes(`index=${index} `)
                                     && r.querySelector('td.fields').textContent.includes('key=hello'))""",
        arg=index, timeout=WAIT_MS)
    dim = page.eval_on_selector(own, "e => getComputedStyle(e.querySelector('td')).color")
    plain = page.eval_on_selector("#events tbody tr:not(.internal):not(.note)",
                                  "e => getComputedStyle(e.querySelector('td')).color")
    assert dim != plain, (dim, plain)
    page.screenshot(path=str(ARTIFACTS / "11-own-writes.png"), full_page=True)

    # the toggle hides them, and the count says how many
    page.uncheck("#f-internal")
    page.wait_for_function("() => !document.querySelector('#events tbody tr.internal')", timeout=WAIT_MS)
    assert "of raftkv's own writes hidden" in page.text_content("#f-count")
    page.check("#f-internal")
    page.wait_for_function("(sel) => document.querySelector(sel)", arg=own, timeout=WAIT_MS)
    assert not page.errors, page.errors


def _head(node, path: str, headers: dict, method: str = "GET") -> tuple[int, dict]:
    """Status and headers of a request (a stream is closed after its head)."""
    req = urllib.request.Request(f"http://{node.http_addr}{path}", headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_members_pages_may_read_the_streams_and_no_other_page(cluster):
    n1 = cluster.form(3)
    n2 = cluster["n2"]
    member = f"http://127.0.0.1:{n1.http_port}"

    def allowed(path: str, origin: str, **headers) -> str | None:
        status, got = _head(n2, path, {"Origin": origin, **headers})
        assert status == 200 and got.get("Vary") == "Origin", (status, got)
        return got.get("Access-Control-Allow-Origin")

    # a member's own page, the member it relays, and the scenario list
    for path in ("/ui/stream?node=n2", "/ui/stream?node=n3", "/ui/replay"):
        assert allowed(path, member) == member, path
    # n1's page opened as localhost (the demo's words) is n1's: the members know it as 127.0.0.1
    assert allowed("/ui/stream?node=n2", f"http://localhost:{n1.http_port}") == f"http://localhost:{n1.http_port}"
    # the host the browser reaches this node by, with a member's port (a tunnel, Docker's published ports)
    assert allowed("/ui/stream?node=n2", f"http://gateway:{n1.http_port}",
                   Host=f"gateway:{n2.http_port}") == f"http://gateway:{n1.http_port}"
    # any other page: no header, so the browser keeps the answer from it
    for origin in (f"http://evil.example:{n1.http_port}", f"http://localhost:{n1.raft_port}",
                   f"https://127.0.0.1:{n1.http_port}", "null", "http://127.0.0.1"):
        assert allowed("/ui/stream?node=n2", origin) is None, origin
    assert allowed("/ui/stream?node=n2", f"http://gateway:{n1.http_port}") is None

    # a preflight, should a browser send one (a reconnecting EventSource's Last-Event-ID)
    status, got = _head(n2, "/ui/stream?node=n2", {"Origin": member, "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "last-event-id"}, "OPTIONS")
    assert status == 204 and got["Access-Control-Allow-Origin"] == member, (status, got)
    assert got["Access-Control-Allow-Methods"] == "GET" and got["Access-Control-Allow-Headers"] == "Last-Event-ID"
    status, got = _head(n2, "/ui/stream", {"Origin": "http://evil.example"}, "OPTIONS")
    assert status == 403 and "Access-Control-Allow-Origin" not in got, (status, got)

    # nothing that acts answers another origin, a member's page included
    resp = n2.request("POST", "/ui/faults", params={"node": "n2"}, json_body={"drop": []},
                      headers={"Origin": member})
    assert "Access-Control-Allow-Origin" not in resp.headers, resp
    assert "Access-Control-Allow-Origin" not in n2.request("GET", "/set", {"key": "a", "value": "b"},
                                                           headers={"Origin": member}).headers
    # the views other clients read keep answering any page
    assert _head(n2, "/status", {"Origin": "http://evil.example"})[1]["Access-Control-Allow-Origin"] == "*"
