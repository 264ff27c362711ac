"""raftkv.client's calls without a network: core.conduct driven by a scripted
transport and a fake clock. Finding the leader, retrying through an
election, the backoff, the deadline, and what each call sends."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from raftkv.client import (
    BadRequest,
    TimeoutNotApplied,
    TimeoutOutcomeUnknown,
    Unavailable,
    WriteOutcomeUnknown,
)
from raftkv.client.core import Book, Failure, Policy, Send, Sleep, backoff, conduct, drive_sync
from raftkv.client.errors import Answer
from raftkv.client.operations import Calls

A, B, C = "http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"
REFUSED = Failure(ConnectionRefusedError(111, "Connection refused"), sent=False)


def ok(body: object, served_by: str = "n1") -> Answer:
    return Answer(200, json.dumps(body).encode(), {"x-raftkv-served-by": served_by})


def status(node_id: str, leader: str | None, http: str | None = None) -> Answer:
    lead = {"id": leader, "address": "x:9", "http": http} if leader else None
    return ok({"id": node_id, "state": "Leader" if leader == node_id else "Follower", "leader": lead}, node_id)


def unavailable(unknown: bool, leader: dict | None = None) -> Answer:
    return Answer(503, json.dumps({"error": "no leader", "outcome_unknown": unknown, "leader": leader}).encode(), {})


class Script:
    """A transport: ``answer(send) -> outcome`` per request, a clock that
    Sleep and each request (``cost`` seconds) move on; records what was asked."""

    def __init__(self, answer: Callable[[Send], Answer | Failure], cost: float = 0.001) -> None:
        self.answer = answer
        self.cost = cost
        self.now = 1000.0
        self.sent: list[Send] = []
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def run(self, steps):
        return drive_sync(steps, self.perform)

    def perform(self, step):
        if isinstance(step, Sleep):
            assert step.seconds > 0
            self.sleeps.append(step.seconds)
            self.now += step.seconds
            return None
        self.sent.append(step)
        outcome = self.answer(step)
        self.now += step.timeout if isinstance(outcome, Failure) and outcome.timed_out else self.cost
        return outcome

    def asked(self) -> list[tuple[str, str]]:
        return [(s.base, s.target.split("?")[0]) for s in self.sent]


class Fake(Calls):
    """The client API on a script."""

    def __init__(self, script: Script, addresses=[A, B, C], **kw) -> None:  # noqa: B006
        super().__init__(addresses, **kw)
        self.script = script

    def _run(self, op):
        return self.script.run(conduct(op, self._book, self._policy, self._admin_headers if op.admin else {},
                                       clock=self.script.clock, rng=lambda: 1.0))


def test_a_call_asks_who_leads_then_goes_to_the_leader_and_stays_there():
    def answer(send):
        if send.target == "/status":
            return status("n1", "n2", "127.0.0.1:8002")
        assert send.base == B
        return ok({"key": "k", "index": 5, "size": 1}, "n2")
    script = Script(answer)
    kv = Fake(script)
    assert kv.set("k", "v") == 5
    assert kv.set("k", "w") == 5
    assert script.asked() == [(A, "/status"), (B, "/set"), (B, "/set")]
    assert script.sleeps == []


def test_a_dead_leader_is_replaced_through_an_election():
    state = {"leader": "n1", "http": A, "dead": {A}}

    def answer(send):
        if send.base in state["dead"]:
            return REFUSED
        if send.target == "/status":
            # the survivors elect n2 after a while
            return status("n?", None) if len(script.sent) < 4 else status("n3", "n2", "127.0.0.1:8002")
        if send.base != B:
            return unavailable(False)
        return ok({"key": "k", "index": 9, "size": 1}, "n2")
    script = Script(answer)
    kv = Fake(script)
    kv._book.learn({"id": "n1", "http": "127.0.0.1:8001"})
    assert kv.set("k", "v") == 9
    assert script.asked()[0] == (A, "/set")
    assert script.asked()[-1] == (B, "/set")
    # every retry waited, each wait longer than the one before (no jitter here)
    assert script.sleeps == sorted(script.sleeps) and len(script.sleeps) >= 2


def test_a_503_naming_the_leader_is_followed_at_once():
    leader = {"id": "n3", "address": "x:9", "http": "127.0.0.1:8003"}

    def answer(send):
        if send.target == "/status":
            return status("n1", None)
        if send.base == A:
            return unavailable(False, leader)
        return ok({"key": "k", "index": 3, "size": 1}, "n3")
    script = Script(answer)
    assert Fake(script).set("k", "v") == 3
    assert script.asked() == [(A, "/status"), (A, "/set"), (C, "/set")]
    assert script.sleeps == []


def test_nodes_naming_each_other_as_leader_do_not_spin():
    # stale answers: n1 says n2 leads, n2 says n1 does; the client backs off all the same
    names = {A: {"id": "n2", "http": "127.0.0.1:8002"}, B: {"id": "n1", "http": "127.0.0.1:8001"}}

    def answer(send):
        if send.target == "/status":
            return status("n1", None)
        return unavailable(False, names[send.base])
    script = Script(answer)
    with pytest.raises(TimeoutNotApplied):
        Fake(script, addresses=[A, B], timeout=3).set("k", "v")
    assert len(script.sent) < 30 and sum(script.sleeps) > 2.5


def test_a_leader_address_that_cannot_be_reached_is_left_for_the_given_ones():
    # the leader advertises an address the client cannot reach (inside a container)
    def answer(send):
        if send.base == "http://10.9.9.9:8000":
            return REFUSED
        if send.target == "/status":
            return status("n1", "n2", "10.9.9.9:8000")
        return ok({"key": "k", "index": 4, "size": 1}, "n2")  # n1 forwards to n2
    script = Script(answer)
    kv = Fake(script, addresses=[A])
    assert kv.set("k", "v") == 4
    assert kv.set("k", "v") == 4
    assert script.asked() == [(A, "/status"), ("http://10.9.9.9:8000", "/set"), (A, "/status"), (A, "/set"),
                              (A, "/set")]


def test_a_write_served_by_another_leader_sends_the_next_call_to_find_it():
    leaders = iter(["127.0.0.1:8001", "127.0.0.1:8002"])

    def answer(send):
        if send.target == "/status":
            http = next(leaders)
            return status("n1", "n1" if http.endswith("1") else "n2", http)
        return ok({"key": "k", "index": 1, "size": 1}, "n2")  # n1 now forwards to n2
    script = Script(answer)
    kv = Fake(script, addresses=[A])
    kv.set("k", "v")
    kv.set("k", "v")
    assert script.asked() == [(A, "/status"), (A, "/set"), (A, "/status"), (B, "/set")]


def test_no_node_at_all_is_a_timeout_that_applied_nothing():
    script = Script(lambda send: REFUSED)
    kv = Fake(script, timeout=5)
    with pytest.raises(TimeoutNotApplied) as caught:
        kv.set("k", "v")
    assert isinstance(caught.value.last, Unavailable) and caught.value.__cause__ is caught.value.last
    assert "timeout of 5s" in str(caught.value) and "Connection refused" in str(caught.value)
    assert 5.0 <= script.now - 1000.0 < 5.1
    # the given addresses were tried in turn, with growing pauses up to the cap
    assert {s.base for s in script.sent} == {A, B, C}
    assert script.sleeps[:3] == [0.05, 0.1, 0.2] and max(script.sleeps) == 1.0


def test_a_write_unanswered_until_the_deadline_may_have_been_applied():
    def answer(send):
        if send.target == "/status":
            return status("n1", "n1", "127.0.0.1:8001")
        return Failure(TimeoutError("timed out"), sent=True, timed_out=True)
    script = Script(answer)
    with pytest.raises(TimeoutOutcomeUnknown) as caught:
        Fake(script, timeout=3).set("k", "v")
    assert isinstance(caught.value.last, WriteOutcomeUnknown)
    # a read in the same state tries again, and ends as a timeout that applied nothing
    script = Script(answer)
    with pytest.raises(TimeoutNotApplied):
        Fake(script, timeout=3).get("k")
    assert len([s for s in script.sent if s.target.startswith("/get")]) >= 1


def test_a_broken_write_fails_at_once_and_is_not_sent_again():
    def answer(send):
        if send.target == "/status":
            return status("n1", "n1", "127.0.0.1:8001")
        return Failure(ConnectionResetError(104, "reset"), sent=True)
    script = Script(answer)
    with pytest.raises(WriteOutcomeUnknown):
        Fake(script).set("k", "v")
    assert script.asked() == [(A, "/status"), (A, "/set")]


def test_each_call_sends_what_the_api_takes():
    def answer(send):
        if send.target == "/status":
            return status("n1", "n1", "127.0.0.1:8001")
        path = send.target.split("?")[0]
        if path == "/get":
            return Answer(404, b'{"error": "key not found", "key": "k"}', {})
        return ok({"removed": True, "index": 2, "peers": []})
    script = Script(answer)
    kv = Fake(script, cluster_key="k" * 20)
    kv.set("k", "v")
    assert kv.get("k", level="lease") is None
    assert kv.delete("k") is True
    kv.join("n4", "127.0.0.1:9004", voter=True, http_address="127.0.0.1:8004")
    kv.remove_peer("n4")
    kv.transfer_leadership("n2")
    kv.peers()
    sent = {s.target.split("?")[0]: s for s in script.sent}
    assert json.loads(sent["/set"].body) == {"key": "k", "value": "v"}
    assert sent["/set"].headers["Content-Type"] == "application/json"
    assert sent["/get?key=k&level=lease".split("?")[0]].target == "/get?key=k&level=lease"
    assert sent["/remove"].target == "/remove?key=k" and sent["/remove"].method == "POST"
    assert json.loads(sent["/join"].body) == {"id": "n4", "addr": "127.0.0.1:9004", "voter": True,
                                              "httpAddr": "127.0.0.1:8004"}
    assert sent["/remove-peer"].target == "/remove-peer?nodeId=n4"
    assert sent["/transfer-leadership"].target == "/transfer-leadership?to=n2"
    # the cluster key goes on the admin calls only
    for path, s in sent.items():
        admin = path in ("/join", "/remove-peer", "/transfer-leadership")
        assert ("Authorization" in s.headers) == admin, path
        if admin:
            assert s.headers["Authorization"] == "Bearer " + "k" * 20


def test_status_of_one_node_asks_that_node_only():
    script = Script(lambda send: status("n3", "n1") if send.base == C else REFUSED)
    assert Fake(script).status("127.0.0.1:8003")["id"] == "n3"
    assert script.asked() == [(C, "/status")]


def test_bad_arguments_are_refused_before_anything_is_sent():
    script = Script(lambda send: pytest.fail("nothing should be sent"))
    kv = Fake(script)
    with pytest.raises(BadRequest) as caught:
        kv.get("k", level="eventual")
    assert caught.value.param == "level"
    with pytest.raises(BadRequest):
        kv.set("", "v")
    with pytest.raises(TypeError):
        kv.set("k", b"bytes")
    with pytest.raises(ValueError):
        Fake(script, addresses=[])


def test_addresses_and_tls():
    kv = Fake(Script(lambda s: REFUSED), addresses="127.0.0.1:8001, 127.0.0.1:8002")
    assert kv.addresses == [A, B]
    book = Book(["https://n1:8000", "n2:8000"], tls=True)
    assert book.seeds == ["https://n1:8000", "https://n2:8000"]
    assert book.learn({"id": "n3", "http": "n3:8000"}) == "https://n3:8000"


def test_backoff_doubles_up_to_its_cap_with_jitter():
    policy = Policy(backoff_base=0.05, backoff_cap=1.0)
    assert [backoff(n, policy, lambda: 1.0) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff(3, policy, lambda: 0.0) == 0.1  # at least half
    assert backoff(100, policy) <= 1.0
