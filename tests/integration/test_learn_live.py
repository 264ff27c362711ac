"""The learning page's live source on a real 3-node cluster: each node's
``/debug/steps``, and ``/ui/learn/live`` on a follower merging all three
into frames through a kill -9 of the leader; then the page itself in a
browser (Playwright driving Debian's chromium).

Screenshots go to ``test-artifacts/ui/`` (gitignored)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from browser import ARTIFACTS, WAIT_MS, needs_browser
from cluster import wait_until

pytestmark = pytest.mark.integration

FRAME_KEYS = {"i", "t", "node", "event", "label", "narration", "logs", "sent", "delivered", "cut", "nodes",
              "flight", "clients"}
RECORD_KEYS = {"node", "t", "seq", "event", "sends", "logs", "narration", "view"}


class EventStream(threading.Thread):
    """Reads a server-sent-events stream on a thread: ``events`` holds
    ``(monotonic time, event, data)`` as they come."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.events: list[tuple[float, str, dict]] = []
        self.response_headers: dict = {}
        self.ended: str | None = None
        self._closing = threading.Event()
        url = urllib.parse.urlsplit(url)
        self._conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self._path = url.path + (f"?{url.query}" if url.query else "")
        self.start()

    def run(self) -> None:
        try:
            self._conn.request("GET", self._path, headers=self.headers)
            resp = self._conn.getresponse()
            self.status = resp.status
            self.response_headers = dict(resp.headers)
            name = "message"
            for raw in resp:
                if self._closing.is_set():
                    break
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((time.monotonic(), name, json.loads(line[6:])))
            self.ended = "closed"
        except Exception as exc:
            self.ended = repr(exc)

    def close(self) -> None:
        """Hang up at once, as a page that goes away does."""
        self._closing.set()
        sock = self._conn.sock
        if sock is not None:
            # the server may have hung up first: then there is nothing to shut
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.join(10)
        self._conn.close()

    def of(self, name: str, since: float = 0.0) -> list[dict]:
        return [data for at, event, data in list(self.events) if event == name and at >= since]

    def frames(self, since: float = 0.0) -> list[dict]:
        return self.of("frame", since)

    def wait(self, predicate, what: str, timeout: float = 20.0):
        def check():
            if self.ended and not self.is_alive():
                raise AssertionError(f"the stream ended: {self.ended}")
            return predicate()
        return wait_until(check, timeout, interval=0.05, what=what)


def _messages(frame: dict) -> list[dict]:
    """Every message a frame draws: in flight, cut, and the one it receives."""
    out = frame["flight"] + frame["cut"]
    if frame["event"]["type"] == "Receive":
        out = out + [frame["event"]["message"]]
    return out


def _role(frame: dict, node_id: str) -> str:
    return next(n["role"] for n in frame["nodes"] if n["id"] == node_id)


def _answered(node, route: str) -> int:
    text = node.get("/metrics").body.decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("raftkv_http_requests_total{") and f'route="{route}"' in line)


def test_live_frames_follow_an_election_after_the_leader_is_killed(cluster):
    n1 = cluster.form(3)
    cluster.wait_applied(n1.set("before", "the kill")["index"])
    leader = cluster.leader()
    viewer = next(n for n in cluster.running() if n.id != leader.id)
    ids = ["n1", "n2", "n3"]
    live = EventStream(f"http://{viewer.http_addr}/ui/learn/live")
    try:
        hello = live.wait(lambda: live.of("hello"), "the hello")[0]
        assert hello["node"] == viewer.id and sorted(hello["members"]) == ids and hello["heartbeats"] is True
        # frames from all three nodes before the kill, every member's stream open
        live.wait(lambda: {f["node"] for f in live.frames() if f["event"]["type"] != "Hello"} == set(ids),
                  "frames of steps from all three nodes")
        live.wait(lambda: {m["id"] for m in live.of("member") if m["up"]} == set(ids), "every member up")
        before = live.frames()
        for frame in before:
            assert set(frame) == FRAME_KEYS
            assert sorted(n["id"] for n in frame["nodes"]) == ids and frame["clients"] == []
        last = before[-1]
        assert all(n["up"] for n in last["nodes"])
        assert [n["id"] for n in last["nodes"] if n["role"] == "Leader"] == [leader.id]
        # a message sent in one frame is received in a later one, on the other node
        sent_in = {m: f for f in before for m in f["sent"]}
        received = [f for f in before if f["delivered"] in sent_in]
        assert received
        for frame in received:
            sender = sent_in[frame["delivered"]]
            assert sender["i"] < frame["i"] and sender["node"] != frame["node"]
        assert any(m["type"] == "AppendEntries" and m["heartbeat"] for f in before for m in f["flight"])

        killed_at = time.monotonic()
        leader.kill()
        live.wait(lambda: any(m["type"] == "RequestVote" for f in live.frames(killed_at) for m in _messages(f)),
                  "a RequestVote in the frames", timeout=15)
        live.wait(lambda: any(n["role"] == "Candidate" for f in live.frames(killed_at) for n in f["nodes"]),
                  "a Candidate in the frames", timeout=15)
        down = live.wait(lambda: [m for m in live.of("member", killed_at) if m["id"] == leader.id
                                  and not m["up"]], "the dead leader's member event")[0]
        assert down["why"] and leader.http_addr in down["why"]
        # the stream goes on without it: a new leader, the dead one drawn down
        new_leader = cluster.leader(exclude=(leader.id,))
        live.wait(lambda: any(_role(f, new_leader.id) == "Leader" and _role(f, leader.id) == "Down"
                              for f in live.frames(killed_at)), "the new leader in the frames")
        settled = time.monotonic()
        live.wait(lambda: len(live.frames(settled)) >= 20, "frames after the election")
        assert {f["node"] for f in live.frames(settled)} <= set(ids) - {leader.id}
        assert any(m["to"] == leader.id for f in live.frames(settled) for m in f["cut"])
        # ... and it keeps trying the dead member, which it reports again when it is back
        live.wait(lambda: any(not m["up"] and "connection refused" in m["why"]
                              for m in live.of("member", killed_at) if m["id"] == leader.id),
                  "the dead member tried again", timeout=10)
        back_at = time.monotonic()
        leader.start().wait_ready()
        live.wait(lambda: any(m["up"] for m in live.of("member", back_at) if m["id"] == leader.id),
                  "the restarted member's stream", timeout=20)
        live.wait(lambda: any(f["node"] == leader.id for f in live.frames(back_at)), "its frames again")
        frames = live.frames()
        assert [f["i"] for f in frames] == list(range(len(frames)))
        assert all(a["t"] <= b["t"] for a, b in zip(frames, frames[1:]))
    finally:
        live.close()


def test_debug_steps_and_the_heartbeat_filter(cluster):
    n1 = cluster.form(3)
    n2 = cluster["n2"]
    steps = EventStream(f"http://{n2.http_addr}/debug/steps")
    try:
        hello = steps.wait(lambda: steps.of("hello"), "the hello")[0]
        assert hello["node"] == "n2" and hello["view"]["id"] == "n2" and hello["view"]["role"] == "Follower"
        assert steps.response_headers["Content-Type"].startswith("text/event-stream")
        assert steps.response_headers["Access-Control-Allow-Origin"] == "*"
        steps.wait(lambda: len(steps.of("step")) >= 5, "step records")
        index = n1.set("seen", "by n2")["index"]
        entry = [index, n1.status()["term"], "command"]
        appended = steps.wait(lambda: [r for r in steps.of("step") if r["event"]["type"] == "Receive"
                                       and entry in r["event"]["message"].get("entries", [])],
                              "n2 receiving the write")[0]
        records = steps.of("step")
        assert all(set(r) == RECORD_KEYS and r["node"] == "n2" for r in records)
        seqs = [r["seq"] for r in records]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert appended["event"]["from"] == "n1"
        assert appended["narration"] and appended["view"]["last"] >= index
        # in memory first; the answer leaves with the fsync that follows
        assert appended["view"]["durable"] < appended["view"]["last"] and appended["sends"] == []
        synced = steps.wait(lambda: [r for r in steps.of("step") if r["seq"] == appended["seq"] + 1], "the fsync")[0]
        assert synced["event"] == {"type": "Fsync", "through": appended["view"]["last"]}
        assert synced["view"]["durable"] == synced["view"]["last"]
        assert synced["sends"][0]["to"] == "n1" and synced["sends"][0]["type"] == "AppendEntriesResponse"
    finally:
        steps.close()

    # n2 counts a stream answered once it ends
    wait_until(lambda: _answered(n2, "/debug/steps") == 1, 15, what="the first /debug/steps to end")
    # heartbeats left out: the write's messages remain, no heartbeat does
    quiet = EventStream(f"http://{n1.http_addr}/ui/learn/live?heartbeats=0")
    try:
        assert quiet.wait(lambda: quiet.of("hello"), "the hello")[0]["heartbeats"] is False
        quiet.wait(lambda: {m["id"] for m in quiet.of("member") if m["up"]} == {"n1", "n2", "n3"},
                   "every member up")
        time.sleep(0.5)
        n1.set("quiet", "please")
        quiet.wait(lambda: any(m["type"] == "AppendEntries" and m["count"] for f in quiet.frames()
                               for m in f["flight"]), "the write's appends")
        time.sleep(1)
        frames = quiet.frames()
        for frame in frames:
            for m in frame["flight"] + frame["cut"]:
                assert not m.get("heartbeat") or m.get("read_seq"), m
    finally:
        quiet.close()
    # the page went away: n1 let go of n2's stream too
    wait_until(lambda: _answered(n2, "/debug/steps") == 2, 15, what="n2's /debug/steps to end")
    assert n1.get("/ui/learn/live", heartbeats="x").status == 400


def test_debug_steps_needs_the_cluster_key_like_debug_stream(cluster):
    key = "k" * 32
    n1 = cluster.add("n1", bootstrap=True, env={"RAFT_CLUSTER_KEY": key}).wait_ready()
    for path in ("/debug/stream", "/debug/steps"):
        try:
            urllib.request.urlopen(f"http://{n1.http_addr}{path}", timeout=10)
            raise AssertionError(f"{path} answered without the key")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401, path
    steps = EventStream(f"http://{n1.http_addr}/debug/steps", {"Authorization": f"Bearer {key}"})
    try:
        assert steps.wait(lambda: steps.of("hello"), "the hello")[0]["node"] == "n1"
    finally:
        steps.close()


SEEN_ON_SCREEN = """() => {
    window.seen = {messages: new Set(), roles: new Set()};
    const note = el => {
        if (el.nodeType !== 1) return;
        for (const m of [el, ...el.querySelectorAll('[data-message]')])
            if (m.dataset && m.dataset.message) window.seen.messages.add(m.dataset.message);
        for (const n of [el, ...el.querySelectorAll('[data-node]')])
            if (n.dataset && n.dataset.role) window.seen.roles.add(n.dataset.role);
    };
    new MutationObserver(changes => changes.forEach(c => {
        note(c.target);
        c.addedNodes.forEach(note);
    })).observe(document.body, {subtree: true, childList: true, attributes: true,
                                attributeFilter: ['data-message', 'data-role']});
}"""


@needs_browser
def test_the_page_draws_the_live_cluster_through_a_leader_kill(cluster, browser_page):
    page = browser_page
    cluster.form(3)
    leader = cluster.leader()
    viewer = next(n for n in cluster.running() if n.id != leader.id)
    page.goto(f"http://{viewer.http_addr}/ui/learn")
    page.get_by_role("button", name="Live cluster", exact=True).click()
    page.wait_for_function("() => document.querySelector('#src-live').getAttribute('aria-pressed') === 'true'",
                           timeout=WAIT_MS)
    page.wait_for_selector("[data-node][data-role=Leader]", state="attached", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "learn-live-01-before.png"), full_page=True)
    # The page plays the election as fast as it must to keep up, so a message
    # or a role may be on screen for a moment only: note everything it draws.
    page.evaluate(SEEN_ON_SCREEN)
    leader.kill()
    page.wait_for_function("() => window.seen.messages.has('RequestVote') && window.seen.roles.has('Candidate')",
                           timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "learn-live-02-election.png"), full_page=True)
    assert not page.errors, page.errors
