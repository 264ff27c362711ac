"""Per-follower lag, as the leader sees it: /peers (lag_entries,
last_contact), /metrics (raft_replication_lag_entries{peer},
raft_leader_last_contact_seconds{peer}) and `raftkv peers`, while a
follower is frozen (SIGSTOP) and after it comes back."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster import wait_until
from test_cli_metrics import cli
from browser import WAIT_MS, needs_browser

pytestmark = pytest.mark.integration


def _peer(leader, peer_id: str) -> dict:
    rows = leader.get("/peers").json()
    return next(r for r in rows if r["id"] == peer_id)


def _gauge(leader, name: str, peer_id: str) -> float | None:
    text = leader.get("/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("peer") == peer_id:
                return sample.value
    return None


def test_a_paused_follower_shows_lag_and_last_contact(cluster):
    n1 = cluster.form(3)
    n2 = cluster["n2"]
    n1.set("warm", "up")
    wait_until(lambda: _peer(n1, "n2")["lag_entries"] == 0, what="n2 to be caught up")
    row = _peer(n1, "n1")
    assert row["lag_entries"] == 0 and row["last_contact"] == 0
    assert _gauge(n1, "raft_replication_lag_entries", "n2") == 0

    n2.pause()
    try:
        for i in range(30):
            n1.set(f"k{i}", str(i))
        first = _peer(n1, "n2")
        assert first["lag_entries"] >= 30, first
        time.sleep(0.5)
        for i in range(30, 40):
            n1.set(f"k{i}", str(i))
        second = _peer(n1, "n2")
        assert second["lag_entries"] >= first["lag_entries"] + 10, (first, second)
        assert second["last_contact"] > first["last_contact"] >= 0, (first, second)

        assert _gauge(n1, "raft_replication_lag_entries", "n2") >= 40
        assert _gauge(n1, "raft_leader_last_contact_seconds", "n2") >= 0.5

        r = cli("peers", "--addr", n1.http_addr)
        assert r.returncode == 0, r.stderr
        header = r.stdout.splitlines()[0]
        for col in ("Node", "Address", "State", "Voter", "Healthy", "Last Contact", "Last Index", "Lag"):
            assert col in header, header
        n2_line = next(line for line in r.stdout.splitlines() if line.startswith("n2 "))
        # a server that does not answer: its lag is unknown, said with how long it has been down
        assert "unreachable" in n2_line and "? (down " in n2_line, n2_line
    finally:
        n2.resume()

    wait_until(lambda: _peer(n1, "n2")["lag_entries"] == 0, 20, what="n2 to catch up")
    assert _gauge(n1, "raft_replication_lag_entries", "n2") == 0
    assert _peer(n1, "n2")["last_contact"] < 1000


LAG_OF = """(id) => { const c = document.querySelector(`[data-testid=node-card][data-node="${id}"]`);
                      return c ? c.querySelector('dd.lag').textContent : null; }"""


@needs_browser
def test_the_dashboard_cards_show_a_followers_lag(cluster, browser_page):
    page = browser_page
    n1 = cluster.form(3)
    n3 = cluster["n3"]
    page.goto(f"http://{n1.http_addr}/ui")
    page.wait_for_function(f"() => ({LAG_OF})('n3') === '0 entries'", timeout=WAIT_MS)
    assert page.evaluate(LAG_OF, "n1") == "(leader)"
    n3.pause()
    try:
        for i in range(20):
            n1.set(f"k{i}", str(i))
        page.wait_for_function(
            f"() => {{ const t = ({LAG_OF})('n3'); return !!t && parseInt(t, 10) >= 20; }}", timeout=WAIT_MS)
    finally:
        n3.resume()
    page.wait_for_function(f"() => ({LAG_OF})('n3') === '0 entries'", timeout=WAIT_MS)
    assert not page.errors, page.errors
