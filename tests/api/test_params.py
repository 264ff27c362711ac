"""Parameter parsing of the HTTP API, without a server."""

from __future__ import annotations

import json

import pytest

from raftkv.http.api.params import (BadRequest, JoinRequest, TooLarge, parse_bool_param, parse_join_json,
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


def test_query_strings_are_decoded_as_parse_qsl_does_or_refused():
    from raftkv.http.api.params import parse_query
    assert parse_query(b"") == {} and parse_query(None) == {}
    assert parse_query(b"key=a+b&value=%2B1%C3%A9&key=second&flag&=x&&") == \
        {"key": "a b", "value": "+1é", "flag": "", "": "x"}
    assert parse_query(b"key=%zz&v=%2") == {"key": "%zz", "v": "%2"}  # not escapes: kept as sent
    assert parse_query("k=é".encode()) == {"k": "é"}
    for bad, param in ((b"key=%ff", "key"), (b"key=%fe", "key"), (b"v=%ED%A0%80", "v"), (b"v=%C0%AF", "v"),
                       (b"v=%E2%82", "v"), (b"v=%F4%90%80%80", "v"), (b"ok=1&v=\xff", "v"), (b"%ff=1", "%ff")):
        err = bad_of(parse_query, bad)
        assert err.param == param and "not valid UTF-8" in err.message, (bad, err.message)
    assert bad_of(parse_query, b"key=%ff").message == "parameter key is not valid UTF-8"


def test_paths_must_be_utf8():
    from raftkv.http.api.params import check_path
    check_path("/key/caf%C3%A9")
    check_path(b"/key/plain")
    for bad in ("/key/%ff", "/key/%C0%AF", "/key/\udcff", b"/key/\xff"):
        assert bad_of(check_path, bad).param == "path"


def test_origin_form_keeps_only_path_and_query():
    from raftkv.http.api.params import origin_form
    assert origin_form("/get?key=k") == "/get?key=k"
    assert origin_form("http://evil.example:1/get?key=k") == "/get?key=k"
    assert origin_form("HTTPS://u:p@h/key/a%2Fb") == "/key/a%2Fb"
    assert origin_form("http://h?x=1") == "/?x=1"
    assert origin_form("http://h") == "/"
    assert origin_form("*") == "/"
    for target in ("http://h//evil.example/x", "http://a/http://b/c"):
        assert origin_form(target).startswith("/") and "://" not in origin_form(target).split("/")[1]


def test_json_bodies_nested_too_deep_are_refused():
    from raftkv.http.api.params import MAX_JSON_DEPTH, parse_json_object
    assert MAX_JSON_DEPTH == 32
    inner = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert parse_json_object(('{"a": ' + inner + "}").encode())  # 32 levels with the object itself
    for body in (b"[" * 100_000, b'{"a":' * 100_000, ('{"a": [' + inner + "]}").encode(),
                 b'{"a": ' + b'{"b": ' * 40 + b"1" + b"}" * 40 + b"}"):
        err = bad_of(parse_json_object, body)
        assert err.param == "body" and "nested deeper than 32 levels" in err.message


def test_json_strings_must_be_utf8():
    from raftkv.http.api.params import parse_join_json, parse_json_object
    assert parse_json_object(b'{"k": "\\ud83d\\ude00"}') == {"k": "\U0001F600"}  # a pair is fine
    assert parse_json_object(b'{"k": "\\\\ud800"}') == {"k": "\\ud800"}  # an escaped backslash
    err = bad_of(parse_json_object, b'{"k": "\\ud800"}')
    assert err.param == "k" and "field k is not valid UTF-8" in err.message
    err = bad_of(parse_json_object, b'{"\\udc00x": "v"}')
    assert err.param == "\\udc00x" and "field name" in err.message
    assert bad_of(parse_json_object, b'{"a": [{"b": ["\\udfff"]}]}').param == "a"
    assert bad_of(parse_json_object, b'{"a": {"\\ud800": 1}}').param == "a"
    for raw in (b'{"k": "\xed\xa0\x80"}', b'{"k": "\xc0\xaf"}', b'{"k": "\xff"}'):
        err = bad_of(parse_json_object, raw)
        assert err.param == "body" and "not valid UTF-8" in err.message
    assert bad_of(parse_key_values, b'{"k": "\\ud800"}', 100).param == "k"
    assert bad_of(parse_join_json, b'{"id": "\\ud800", "addr": "h:1"}', "h").param == "id"
    # every refusal can be answered: its text encodes as UTF-8
    for body in (b'{"\\ud800": 1}', b'{"k": "\\ud800"}'):
        err = bad_of(parse_json_object, body)
        (err.message + err.param).encode("utf-8")


def bad_of(fn, *args) -> BadRequest:
    return bad(fn, *args)
