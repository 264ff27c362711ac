"""Parameter parsing of the HTTP API, without a server."""

from __future__ import annotations

import json

import pytest

from raftkv.http.params import (BadRequest, JoinRequest, TooLarge, parse_bool_param, parse_join_json,
                        parse_join_params, parse_key, parse_key_values, parse_value)


def bad(fn, *args) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        fn(*args)
    return info.value


def test_join_query_defaults_to_the_callers_host():
    assert parse_join_params({"nodeId": "n2", "raftPort": "9001"}, "127.0.0.1") == \
        JoinRequest("n2", "127.0.0.1:9001", False, None)
    assert parse_join_params({"nodeId": "n2", "raftPort": "9001"}, "::1").address == "[::1]:9001"
    j = parse_join_params({"nodeId": "n3", "raftAddr": "10.0.0.3:9002", "raftPort": "1",
                           "voter": "true", "httpAddr": "10.0.0.3:8002"}, "127.0.0.1")
    assert j == JoinRequest("n3", "10.0.0.3:9002", True, "10.0.0.3:8002")


@pytest.mark.parametrize("params, param", [
    ({}, "nodeId"),
    ({"nodeId": "", "raftPort": "9001"}, "nodeId"),
    ({"nodeId": "  ", "raftPort": "9001"}, "nodeId"),
    ({"nodeId": "a/b", "raftPort": "9001"}, "nodeId"),
    ({"nodeId": "n2"}, "raftPort"),
    ({"nodeId": "n2", "raftPort": ""}, "raftPort"),
    ({"nodeId": "n2", "raftPort": "abc"}, "raftPort"),
    ({"nodeId": "n2", "raftPort": "0"}, "raftPort"),
    ({"nodeId": "n2", "raftPort": "65536"}, "raftPort"),
    ({"nodeId": "n2", "raftAddr": "host"}, "raftAddr"),
    ({"nodeId": "n2", "raftAddr": "host:port"}, "raftAddr"),
    ({"nodeId": "n2", "raftAddr": ":9001"}, "raftAddr"),
    ({"nodeId": "n2", "raftPort": "9001", "voter": "perhaps"}, "voter"),
    ({"nodeId": "n2", "raftPort": "9001", "httpAddr": "nohost"}, "httpAddr"),
])
def test_join_query_errors_name_the_parameter(params, param):
    err = bad(parse_join_params, params, "127.0.0.1")
    assert err.param == param and param in err.message


def test_join_without_a_known_caller_needs_raft_addr():
    assert bad(parse_join_params, {"nodeId": "n2", "raftPort": "9001"}, None).param == "raftAddr"


def test_join_json_hraftd_style():
    body = json.dumps({"id": "n2", "addr": "127.0.0.1:9001"}).encode()
    assert parse_join_json(body, "10.0.0.1") == JoinRequest("n2", "127.0.0.1:9001", False, None)
    body = json.dumps({"id": "n2", "raftPort": 9001, "voter": True}).encode()
    assert parse_join_json(body, "10.0.0.1") == JoinRequest("n2", "10.0.0.1:9001", True, None)
    assert bad(parse_join_json, b"{nope", "h").param == "body"
    assert bad(parse_join_json, b"[1]", "h").param == "body"
    assert bad(parse_join_json, b'{"addr": "h:1"}', "h").param == "id"
    assert bad(parse_join_json, b'{"id": 5, "addr": "h:1"}', "h").param == "id"
    assert bad(parse_join_json, b'{"id": "n2", "addr": ["h:1"]}', "h").param == "addr"


def test_keys_and_values():
    assert parse_key({"key": "a b/é"}) == "a b/é"
    assert bad(parse_key, {}).message == "missing parameter: key"
    assert bad(parse_key, {"key": ""}).message == "empty parameter: key"
    assert bad(parse_key, {"key": "\x00raftkv/http/n1"}).param == "key"
    assert parse_value({"value": ""}, 10) == ""
    assert bad(parse_value, {}, 10).param == "value"
    with pytest.raises(TooLarge) as info:
        parse_value({"value": "x" * 11}, 10)
    assert info.value.limit == 10 and info.value.size == 11
    with pytest.raises(TooLarge):
        parse_value({"value": "é" * 5}, 11, "kk")  # utf-8 bytes count, key included


def test_bool_params():
    assert parse_bool_param({}, "stale") is False
    assert parse_bool_param({"stale": ""}, "stale") is True
    for text in ("true", "1", "YES", "on"):
        assert parse_bool_param({"stale": text}, "stale") is True
    for text in ("false", "0", "no", "Off"):
        assert parse_bool_param({"stale": text}, "stale") is False
    assert bad(parse_bool_param, {"stale": "maybe"}, "stale").param == "stale"


def test_key_values_body():
    assert parse_key_values(b'{"a": "1", "b": ""}', 100) == {"a": "1", "b": ""}
    assert bad(parse_key_values, b"{}", 100).param == "body"
    assert bad(parse_key_values, b"not json", 100).param == "body"
    assert bad(parse_key_values, b'{"a": 1}', 100).param == "a"
    assert bad(parse_key_values, b'{"": "x"}', 100).param == "body"
    assert bad(parse_key_values, b'{"\\u0000raftkv/x": "x"}', 100).param.startswith("\x00raftkv/")
    with pytest.raises(TooLarge):
        parse_key_values(b'{"a": "' + b"x" * 200 + b'"}', 100)
