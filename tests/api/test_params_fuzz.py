"""Property tests of the HTTP parameter parsers: any input is either parsed
or refused with BadRequest/TooLarge naming a parameter -- never another
exception (which the server would turn into a 500) -- and what is accepted
is what was sent."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from raftkv.http.api.params import (BadRequest, JoinRequest, TooLarge, parse_bool_param, parse_join_json,
                        parse_join_params, parse_key, parse_key_values, parse_value)
from raftkv.statemachine.commands import RESERVED_PREFIX

NAMES = ["key", "value", "nodeId", "id", "raftPort", "raftAddr", "addr", "voter", "httpAddr", "stale", "x"]
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", " ", "0", "65535", "65536", "-1", "9001", "true", "no", "[::1]:9001", "h:1", "a b:1", "[", "]:1",
     RESERVED_PREFIX + "x", "n2", "\x00", "9" * 30])
params = st.dictionaries(st.sampled_from(NAMES), texts, max_size=8)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | texts,
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3),
                           max_leaves=8)


def refused_properly(exc: Exception) -> bool:
    return isinstance(exc, (BadRequest, TooLarge)) and bool(exc.param)


@settings(max_examples=400, deadline=None)
@given(params, st.one_of(st.none(), st.sampled_from(["127.0.0.1", "::1", "10.0.0.7"])))
def test_join_params_parse_or_name_the_culprit(p, host):
    try:
        join = parse_join_params(p, host)
    except Exception as exc:
        assert refused_properly(exc), repr(exc)
        return
    assert isinstance(join, JoinRequest) and join.id == join.id.strip() and join.id
    hostpart, _, port = join.address.rpartition(":")
    assert hostpart and 0 < int(port) < 65536


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6)).map(
    lambda d: json.dumps(d).encode()) | st.binary(max_size=64))
def test_join_json_parses_or_names_the_culprit(body):
    try:
        parse_join_json(body, "127.0.0.1")
    except Exception as exc:
        assert refused_properly(exc), repr(exc)


@settings(max_examples=400, deadline=None)
@given(params, st.integers(1024, 4096))
def test_key_value_and_bool(p, limit):
    for fn in (lambda: parse_key(p), lambda: parse_value(p, limit, p.get("key", "")),
               lambda: parse_bool_param(p, "stale")):
        try:
            fn()
        except Exception as exc:
            assert refused_properly(exc), repr(exc)
    key = p.get("key")
    if key and not key.startswith(RESERVED_PREFIX):
        assert parse_key(p) == key           # keys are taken verbatim


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values.map(lambda d: json.dumps(d).encode()), st.binary(max_size=64)),
       st.integers(1024, 4096))
def test_key_values_body(body, limit):
    try:
        doc = parse_key_values(body, limit)
    except Exception as exc:
        assert refused_properly(exc), repr(exc)
        return
    assert doc and all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items())


query_bytes = st.lists(st.sampled_from([b"key", b"value", b"=", b"&", b"+", b"%", b"%ff", b"%C3%A9", b"%ED%A0%80",
                                        b"%C0%AF", b"%2", b"%zz", b"a", b"\xff", "é".encode(), b"%00"]),
                       max_size=12).map(b"".join) | st.binary(max_size=40)


@settings(max_examples=500, deadline=None)
@given(query_bytes)
def test_a_query_is_decoded_or_refused_naming_a_parameter(raw):
    from raftkv.http.api.params import parse_query
    try:
        decoded = parse_query(raw)
    except Exception as exc:
        assert refused_properly(exc), repr(exc)
        (exc.message + exc.param).encode("utf-8")  # the refusal itself can be answered
        return
    for name, value in decoded.items():
        name.encode("utf-8")  # no surrogates, no U+FFFD made up for a bad byte
        value.encode("utf-8")
        assert "\ufffd" not in name + value or "\ufffd".encode() in raw or b"%EF%BF%BD" in raw.upper()


deep_json = st.recursive(st.none() | st.integers() | st.sampled_from(["a", "\ud800", "\udfff", "é", "\U0001F600"]),
                         lambda c: st.lists(c, max_size=2) | st.dictionaries(
                             st.sampled_from(["k", "\ud800", "é"]), c, max_size=2), max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["k", "v", "\udc80"]), deep_json, max_size=3), st.integers(0, 40))
def test_json_objects_parse_to_utf8_text_within_the_depth_or_are_refused(doc, extra_depth):
    from raftkv.http.api.params import MAX_JSON_DEPTH, parse_json_object
    body = json.dumps(doc).encode()  # ensure_ascii: surrogates as \u escapes
    body = body[:-1] + b', "deep": ' + b"[" * extra_depth + b"]" * extra_depth + b"}" if body != b"{}" else body
    try:
        parsed = parse_json_object(body)
    except Exception as exc:
        assert refused_properly(exc), repr(exc)
        (exc.message + exc.param).encode("utf-8")
        return
    json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # every string has a UTF-8 form

    def depth(v) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        return 0
    assert depth(parsed) <= MAX_JSON_DEPTH
