"""raftkv.client's answer-to-error table and its retry decision, on answers
shaped as raftkv's HTTP API sends them (raftkv/http/api/replies.py)."""

from __future__ import annotations

import json

import pytest

from raftkv.client import (
    BadRequest,
    Conflict,
    NotApplied,
    NotFound,
    OutcomeUnknown,
    RaftkvError,
    ServerError,
    Timeout,
    TimeoutNotApplied,
    TimeoutOutcomeUnknown,
    TLSError,
    TooLarge,
    Unauthorized,
    Unavailable,
    WriteOutcomeUnknown,
)
from raftkv.client.core import Failure, Operation, decide
from raftkv.client.errors import Answer, error_for

WRITE = Operation("set 'k'", "POST", "/set", json={"key": "k", "value": "v"}, write=True,
                  result=lambda body: body["index"])
READ = Operation("get 'k'", "GET", "/get", {"key": "k"}, result=lambda body: body["value"], missing=None)
ADMIN = Operation("remove_peer n9", "POST", "/remove-peer", {"nodeId": "n9"}, write=True, admin=True)


def answer(status: int, body: object, **headers: str) -> Answer:
    return Answer(status, (json.dumps(body) + "\n").encode(), {"x-raftkv-served-by": "n2", **headers})


LEADER = {"id": "n1", "address": "127.0.0.1:9000", "http": "127.0.0.1:8000"}


@pytest.mark.parametrize("status, body, write, kind", [
    (400, {"error": "missing parameter: key", "param": "key"}, True, BadRequest),
    (431, {"error": "request head over the limit", "param": "request"}, False, BadRequest),
    (413, {"error": "value is 2000000 bytes", "param": "value", "limit": 1048576}, True, TooLarge),
    (401, {"error": "this route needs the cluster key"}, True, Unauthorized),
    (403, {"error": "fault injection is off"}, True, Unauthorized),
    (404, {"error": "unknown server 'n9'", "param": "nodeId"}, True, NotFound),
    (409, {"error": "address already used"}, True, Conflict),
    # a 503 says whether the write may still happen
    (503, {"error": "no leader", "outcome_unknown": False, "leader": None}, True, Unavailable),
    (503, {"error": "timed out", "outcome_unknown": True, "leader": LEADER}, True, WriteOutcomeUnknown),
    (503, {"error": "timed out", "outcome_unknown": True, "leader": LEADER}, False, Unavailable),
    # the connection cap refuses a request before reading it: nothing was done
    (503, {"error": "too many connections", "param": "request"}, True, Unavailable),
    # a 503 from something that is not raftkv (a proxy): the write's fate is unknown
    (503, {"error": "upstream"}, True, WriteOutcomeUnknown),
    (502, None, True, WriteOutcomeUnknown),
    (507, {"error": "disk full", "outcome_unknown": True}, True, WriteOutcomeUnknown),
    (507, {"error": "disk full", "outcome_unknown": False}, True, Unavailable),
    (500, {"error": "internal error"}, True, ServerError),
])
def test_an_answer_becomes_its_error(status, body, write, kind):
    error = error_for(answer(status, body), write=write, address="http://127.0.0.1:8001")
    assert type(error) is kind
    assert isinstance(error, RaftkvError) and error.status == status
    assert error.served_by == "n2" and error.address == "http://127.0.0.1:8001"
    if isinstance(body, dict):
        assert body["error"] in str(error)
    # each error is exactly one of: safe to repeat, or outcome unknown
    assert isinstance(error, NotApplied) != isinstance(error, OutcomeUnknown)
    assert error.outcome_unknown == isinstance(error, OutcomeUnknown)


def test_bad_request_and_too_large_keep_the_param_and_limit():
    error = error_for(answer(413, {"error": "too big", "param": "value", "limit": 1024}), write=True)
    assert isinstance(error, BadRequest) and error.param == "value" and error.limit == 1024
    error = error_for(answer(400, {"error": "unknown read level", "param": "level"}), write=False)
    assert error.param == "level"


def test_a_body_that_is_not_json_still_says_what_came():
    error = error_for(Answer(502, b"<html>Bad Gateway</html>", {}), write=False)
    assert isinstance(error, Unavailable) and "Bad Gateway" in str(error) and error.body is None


def test_timeouts_are_one_type_of_either_safety():
    assert issubclass(TimeoutNotApplied, Timeout) and issubclass(TimeoutNotApplied, NotApplied)
    assert issubclass(TimeoutOutcomeUnknown, Timeout) and issubclass(TimeoutOutcomeUnknown, OutcomeUnknown)
    assert not issubclass(TimeoutNotApplied, OutcomeUnknown)


# --- the retry decision -----------------------------------------------------------

def test_success_gives_the_result():
    verdict = decide(WRITE, answer(200, {"key": "k", "index": 7, "size": 1}), "http://a")
    assert verdict.done and verdict.value == 7


def test_a_missing_key_is_a_value_for_get_and_an_error_elsewhere():
    verdict = decide(READ, answer(404, {"error": "key not found", "key": "k"}), "http://a")
    assert verdict.done and verdict.value is None
    verdict = decide(ADMIN, answer(404, {"error": "unknown server 'n9'"}), "http://a")
    assert not verdict.done and not verdict.retry and isinstance(verdict.error, NotFound)


def test_nothing_done_is_retried_with_the_leader_it_names():
    verdict = decide(WRITE, answer(503, {"error": "leadership lost", "outcome_unknown": False, "leader": LEADER}),
                     "http://a")
    assert verdict.retry and isinstance(verdict.error, Unavailable) and verdict.leader == LEADER


def test_a_write_that_may_have_been_applied_is_never_retried():
    verdict = decide(WRITE, answer(503, {"error": "timed out", "outcome_unknown": True}), "http://a")
    assert not verdict.retry and isinstance(verdict.error, WriteOutcomeUnknown)
    # ... but a read is: it changes nothing
    verdict = decide(READ, answer(503, {"error": "timed out", "outcome_unknown": True}), "http://a")
    assert verdict.retry


def test_a_connection_never_opened_is_retried_for_any_call():
    refused = Failure(ConnectionRefusedError(111, "Connection refused"), sent=False)
    for op in (WRITE, READ, ADMIN):
        verdict = decide(op, refused, "http://a")
        assert verdict.retry and isinstance(verdict.error, Unavailable), op


def test_a_connection_broken_after_a_write_was_sent_is_outcome_unknown():
    reset = Failure(ConnectionResetError(104, "Connection reset by peer"), sent=True)
    verdict = decide(WRITE, reset, "http://a")
    assert not verdict.retry and isinstance(verdict.error, WriteOutcomeUnknown)
    assert "may have been applied" in str(verdict.error)
    assert decide(READ, reset, "http://a").retry


def test_client_errors_and_tls_are_not_retried():
    for status in (400, 401, 409, 413):
        verdict = decide(WRITE, answer(status, {"error": "no"}), "http://a")
        assert not verdict.retry and isinstance(verdict.error, NotApplied)
    verdict = decide(READ, Failure(OSError("certificate verify failed"), sent=False, tls=True), "https://a")
    assert not verdict.retry and isinstance(verdict.error, TLSError)


def test_a_redirect_is_followed_to_its_location():
    verdict = decide(WRITE, answer(307, {}, location="http://127.0.0.1:8002/set"), "http://127.0.0.1:8001")
    assert verdict.redirect == "http://127.0.0.1:8002/set"
    verdict = decide(READ, answer(308, {}, location="/get?key=k"), "http://127.0.0.1:8001")
    assert verdict.redirect == "http://127.0.0.1:8001/get?key=k"
