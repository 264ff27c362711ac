"""raftkv.observability.hclog against lines go-hclog prints, as hashicorp/raft's logs show them."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import timedelta

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from raftkv.observability import hclog
from raftkv.observability.hclog import Bare, format_duration, render_json, render_line
from raftkv.raft.effects import Log


def line(level: str, message: str, *fields: tuple[str, object], name: str = "raft") -> str:
    """A line without its timestamp, minus the newline."""
    out = render_line(None, level, name, message, fields)
    assert out.endswith("\n")
    return out[:-1]


def value(v: object) -> str:
    """How one value renders after ``k=``."""
    return line("INFO", "m", ("k", v)).removeprefix("[INFO]  raft: m: k=")


@pytest.fixture
def tz():
    """Switch the process time zone (POSIX TZ strings, no tzdata needed)."""
    saved = os.environ.get("TZ")

    def set_tz(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_tz
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture
def sink():
    """Route the process-wide logger into a buffer; restore the defaults after."""
    buf = io.StringIO()
    hclog.configure("INFO", "hclog", buf)
    yield buf
    hclog.configure()


# --- the line -------------------------------------------------------------

@pytest.mark.parametrize("expected, level, message, fields", [
    ("[INFO]  raft: election won: term=2 tally=1", "INFO", "election won",
     [("term", 2), ("tally", 1)]),
    ("[INFO]  raft: no logs to truncate", "INFO", "no logs to truncate", []),
    ("[WARN]  raft: Election timeout reached, restarting election", "WARN",
     "Election timeout reached, restarting election", []),
    ("[DEBUG] raft: pre-voting for self: term=2 id=n1", "DEBUG", "pre-voting for self",
     [("term", 2), ("id", "n1")]),
    ("[ERROR] raft: failed to get log: index=1 error=\"log not found\"", "ERROR",
     "failed to get log", [("index", 1), ("error", "log not found")]),
    ("[TRACE] raft: t", "TRACE", "t", []),
    ("[?????] raft: t", "FATAL", "t", []),
])
def test_level_tokens_and_pairs(expected, level, message, fields):
    assert line(level, message, *fields) == expected


def test_empty_message_or_name():
    assert line("INFO", "", ("k", 1)) == "[INFO]  raft: k=1"
    assert line("INFO", "hello", name="") == "[INFO]  hello"


def test_keys_are_verbatim():
    # raft really logs a key with a space in it.
    assert line("ERROR", "failed to heartbeat to", ("peer", "127.0.0.1:19002"),
                ("backoff time", timedelta(milliseconds=10)),
                ("error", "dial tcp 127.0.0.1:19002: connect: connection refused")) == (
        "[ERROR] raft: failed to heartbeat to: peer=127.0.0.1:19002 backoff time=10ms "
        "error=\"dial tcp 127.0.0.1:19002: connect: connection refused\"")


def test_captured_single_node_election():
    node = "Node at 127.0.0.1:19001 [{}]"
    got = [
        line("WARN", "heartbeat timeout reached, starting election",
             ("last-leader-addr", Bare("")), ("last-leader-id", Bare(""))),
        line("INFO", "entering candidate state", ("node", node.format("Candidate")), ("term", 2)),
        line("INFO", "pre-vote successful, starting election", ("term", 2), ("tally", 1),
             ("refused", 0), ("votesNeeded", 1)),
        line("INFO", "entering leader state", ("leader", node.format("Leader"))),
    ]
    assert got == [
        "[WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr= last-leader-id=",
        "[INFO]  raft: entering candidate state: node=\"Node at 127.0.0.1:19001 [Candidate]\" term=2",
        "[INFO]  raft: pre-vote successful, starting election: term=2 tally=1 refused=0 votesNeeded=1",
        "[INFO]  raft: entering leader state: leader=\"Node at 127.0.0.1:19001 [Leader]\"",
    ]


def test_captured_follower_and_restore_lines():
    assert line("INFO", "entering follower state",
                ("follower", "Node at 127.0.0.1:19001 [Follower]"),
                ("leader-address", Bare("")), ("leader-id", Bare(""))) == (
        "[INFO]  raft: entering follower state: "
        "follower=\"Node at 127.0.0.1:19001 [Follower]\" leader-address= leader-id=")
    assert line("INFO", "snapshot restore progress", ("id", "2-32-1795352789373"),
                ("last-index", 32), ("last-term", 2), ("size-in-bytes", 344),
                ("read-bytes", 344), ("percent-complete", "100.00%")) == (
        "[INFO]  raft: snapshot restore progress: id=2-32-1795352789373 last-index=32 "
        "last-term=2 size-in-bytes=344 read-bytes=344 percent-complete=\"100.00%\"")
    assert line("INFO", "initial configuration", ("index", 0), ("servers", [])) == (
        "[INFO]  raft: initial configuration: index=0 servers=[]")
    # A plain (non-Bare) empty string prints "" (vote rejections' leader-id).
    assert line("WARN", "rejecting vote request since we have a leader",
                ("from", "127.0.0.1:19103"), ("leader", "127.0.0.1:19102"),
                ("leader-id", "")) == (
        "[WARN]  raft: rejecting vote request since we have a leader: "
        "from=127.0.0.1:19103 leader=127.0.0.1:19102 leader-id=\"\"")


# --- values ---------------------------------------------------------------

@pytest.mark.parametrize("v, expected", [
    ("", '""'),
    (Bare(""), ""),
    (Bare("n2"), "n2"),
    (Bare("a b"), '"a b"'),
    (2, "2"),
    (-7, "-7"),
    (True, "true"),
    (False, "false"),
    (1.5, "1.5"),
    (1.0, "1"),
    (0.0001, "0.0001"),
    (1e-05, "1e-05"),
    (123456.0, "123456"),
    (1e6, '"1e+06"'),  # Go's %v exponent form; the "+" forces quotes
    (None, "<nil>"),
    ("127.0.0.1:9001", "127.0.0.1:9001"),
    ("a=b", "a=b"),
    ("{x}", "{x}"),
    ("EOF", "EOF"),
    ("a,b", '"a,b"'),
    ("x(y)", '"x(y)"'),
    ("100.00%", '"100.00%"'),
    ("é", '"é"'),
    ("`-./:;<=>?@[\\]^_{|}~", "`-./:;<=>?@[\\]^_{|}~"),
    ("{Voter n2 127.0.0.1:9001}", '"{Voter n2 127.0.0.1:9001}"'),
    ("[{Suffrage:Voter ID:n1 Address:127.0.0.1:9000} {Suffrage:Nonvoter ID:n2 Address:127.0.0.1:9001}]",
     '"[{Suffrage:Voter ID:n1 Address:127.0.0.1:9000} {Suffrage:Nonvoter ID:n2 Address:127.0.0.1:9001}]"'),
])
def test_value_rendering(v, expected):
    assert value(v) == expected


def test_escapes_inside_quotes():
    assert value('say "hi"') == r'"say \"hi\""'
    assert value("a\\b c") == '"a\\b c"'  # backslash is not doubled
    assert value("a\tb\rc\ad\be\ff\vg") == r'"a\tb\rc\ad\be\ff\vg"'
    assert value("x\x01\x1f") == r'"x\x01\x1f"'
    assert value("x\x7f\u200b\U000e0001") == r'"x\u007f\u200b\U000e0001"'
    assert value("naïve ✓") == '"naïve ✓"'  # printable non-ASCII kept


def test_other_objects_use_str():
    class Server:
        def __str__(self) -> str:
            return "{Voter n2 127.0.0.1:9001}"

    class Empty:
        def __str__(self) -> str:
            return ""

    assert line("ERROR", "failed to appendEntries to", ("peer", Server()), ("error", "EOF")) == (
        "[ERROR] raft: failed to appendEntries to: peer=\"{Voter n2 127.0.0.1:9001}\" error=EOF")
    assert value(Empty()) == ""


def test_slices():
    assert value([]) == "[]"
    assert value(()) == "[]"
    assert value(["a", "b c"]) == '["a", "b c"]'  # never quoted as a whole
    assert value([1, 2]) == "[1, 2]"
    assert value(['a\\"b']) == r'["a\\\"b"]'  # strconv.Quote inside slices doubles backslashes
    assert value([None, True, timedelta(seconds=1)]) == "[<nil>, true, 1s]"
    assert value([Bare("")]) == '[""]'


@pytest.mark.parametrize("td, expected", [
    (timedelta(0), "0s"),
    (timedelta(milliseconds=10), "10ms"),
    (timedelta(microseconds=512346), "512.346ms"),
    (timedelta(milliseconds=501, microseconds=66), "501.066ms"),
    (timedelta(seconds=1.5), "1.5s"),
    (timedelta(minutes=1, seconds=30), "1m30s"),
    (timedelta(minutes=10), "10m0s"),
    (timedelta(hours=1), "1h0m0s"),
    (timedelta(hours=24), "24h0m0s"),
    (timedelta(microseconds=500), "500µs"),
    (timedelta(microseconds=1500), "1.5ms"),
    (timedelta(seconds=1, microseconds=1), "1.000001s"),
    (timedelta(hours=2, seconds=3, milliseconds=250), "2h0m3.25s"),
    (-timedelta(milliseconds=10), "-10ms"),
    (-timedelta(minutes=1, seconds=30), "-1m30s"),
])
def test_format_duration(td, expected):
    assert format_duration(td) == expected


def test_duration_values():
    assert value(timedelta(milliseconds=10)) == "10ms"
    assert value(timedelta(microseconds=500)) == '"500µs"'  # the µ forces quotes
    assert line("WARN", "failed to contact", ("server-id", Bare("n2")),
                ("time", timedelta(microseconds=501066))) == (
        "[WARN]  raft: failed to contact: server-id=n2 time=501.066ms")


def test_multi_line_values():
    # Captured: ...raft: multi: a=1⏎  text=⏎  | line1⏎  | line2⏎   b=2⏎
    out = render_line(None, "INFO", "raft", "multi", [("a", 1), ("text", "line1\nline2"), ("b", 2)])
    assert out == "[INFO]  raft: multi: a=1\n  text=\n  | line1\n  | line2\n   b=2\n"
    # A multi-line last value leaves a final line of two spaces; a trailing
    # newline adds no empty "|" line; lines are escaped but not quoted.
    out = render_line(None, "INFO", "raft", "m", [("t", 'x "q"\ty\n')])
    assert out == '[INFO]  raft: m:\n  t=\n  | x "q"\\ty\n  \n'


@given(st.text(st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S"),
                             include_characters=" "), min_size=1))
def test_quoting_rule_round_trip(text):
    got = value(text)
    if all("-" <= ch <= "~" for ch in text):
        assert got == text
    else:
        assert got.startswith('"') and got.endswith('"')
        # Only '"' is escaped for printable text, so undoing that recovers the value.
        assert got[1:-1].replace('\\"', '"') == text


# --- timestamps -----------------------------------------------------------

WHEN = 1612250178.2289  # 2021-02-02T07:16:18.2289Z


def test_timestamp_utc(tz):
    tz("UTC0")
    assert render_line(WHEN, "INFO", "raft", "m", []) == "2021-02-02T07:16:18.228Z [INFO]  raft: m\n"


def test_timestamp_with_offset(tz):
    tz("CST-8")
    assert render_line(WHEN, "INFO", "raft", "election won", [("term", 2), ("tally", 1)]) == (
        "2021-02-02T15:16:18.228+0800 [INFO]  raft: election won: term=2 tally=1\n")
    tz("NST+3:30")
    assert render_line(WHEN, "INFO", "", "m", []).startswith("2021-02-02T03:46:18.228-0330 ")


def test_timestamp_truncates(tz):
    tz("UTC0")
    # .228 as a float is really .2279999...; .9999 must not roll over the second.
    assert render_line(1612250178.228, "INFO", "", "m", []).startswith("2021-02-02T07:16:18.228Z")
    assert render_line(1612250178.9999, "INFO", "", "m", []).startswith("2021-02-02T07:16:18.999Z")


# --- JSON -----------------------------------------------------------------

def test_json_line(tz):
    tz("UTC0")
    out = render_json(1795352902.909416, "INFO", "raft", "entering follower state",
                      [("follower", {"RestoreCommittedLogs": False}),
                       ("leader-address", Bare("")), ("leader-id", Bare(""))])
    assert out == (
        '{"@level":"info","@message":"entering follower state","@module":"raft",'
        '"@timestamp":"2026-11-22T13:08:22.909416Z","follower":{"RestoreCommittedLogs":false},'
        '"leader-address":"","leader-id":""}\n')


def test_json_values(tz):
    tz("CST-8")
    record = json.loads(render_json(WHEN, "WARN", "", "m", [
        ("z", 1), ("backoff time", timedelta(milliseconds=10)), ("err", ValueError("boom")),
        ("ids", ["a", Bare("b")]), ("f", 2.0), ("none", None)]))
    assert list(record) == ["@level", "@message", "@timestamp", "backoff time", "err", "f",
                            "ids", "none", "z"]  # sorted, no @module for an empty name
    assert record["@level"] == "warn"
    assert record["@timestamp"] == "2021-02-02T15:16:18.228900+08:00"
    assert record["backoff time"] == 10_000_000
    assert record["err"] == "boom"
    assert record["ids"] == ["a", "b"]
    assert record["none"] is None
    assert '"f":2,' in render_json(None, "INFO", "", "m", [("f", 2.0), ("g", 1)])


def test_json_escapes_html():
    out = render_json(None, "ERROR", "raft", "a <b> & c", [("é", "\u2028")])
    assert out == '{"@level":"error","@message":"a \\u003cb\\u003e \\u0026 c","@module":"raft","é":"\\u2028"}\n'


# --- configuration and the process-wide sink -------------------------------

def test_get_logger_keeps_keyword_order(sink):
    log = hclog.get_logger("raft")
    log.info("updating configuration", **{"command": "AddVoter", "server-id": Bare("n3"),
                                           "server-addr": Bare(""), "servers": "[]"})
    log.warn("failed to contact quorum of nodes, stepping down")
    log.warning("b")
    log.error("failed to get log", index=1, error="log not found")
    lines = sink.getvalue().splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == [
        "[INFO]  raft: updating configuration: command=AddVoter server-id=n3 server-addr= servers=[]",
        "[WARN]  raft: failed to contact quorum of nodes, stepping down",
        "[WARN]  raft: b",
        "[ERROR] raft: failed to get log: index=1 error=\"log not found\"",
    ]


def test_bound_keys_come_first(sink):
    log = hclog.get_logger("raft").bind(id="2-32-1795352789373")
    log.info("restored from snapshot", **{"last-index": 32})
    assert sink.getvalue().split(" ", 1)[1] == (
        "[INFO]  raft: restored from snapshot: id=2-32-1795352789373 last-index=32\n")


@pytest.mark.parametrize("level", list(hclog.LEVELS))
def test_level_filtering(sink, level):
    log = hclog.get_logger("raft")  # created before configure(), still follows it
    hclog.configure(level, "hclog", sink)
    for method in ("trace", "debug", "info", "warn", "error"):
        getattr(log, method)(method)
        hclog.emit_fields(method.upper(), "raft", "emitted", ())
    tokens = [ln.split(" ")[1] for ln in sink.getvalue().splitlines()]
    enabled = [name for name, n in hclog.LEVELS.items() if n >= hclog.LEVELS[level]]
    assert tokens == [f"[{name}]" for name in enabled for _ in (1, 2)]
    assert [name for name in hclog.LEVELS if hclog.is_enabled(name.lower())] == enabled


def test_filtered_calls_do_not_reach_the_processors(sink, monkeypatch):
    seen = []

    def tap(logger, method_name, record):
        seen.append(record["event"])
        return record

    def boom(*args):
        raise AssertionError("rendered a filtered event")

    hclog.add_processor(tap)
    try:
        monkeypatch.setattr(hclog, "render_line", boom)
        hclog.get_logger("raft").debug("quiet", k=object())
        hclog.get_logger("raft").log("debug", "quiet")
        hclog.emit_fields("DEBUG", "raft", "quiet", [("k", 1)])
        hclog.emit_fields("TRACE", "raft", "quiet", [("k", 1)])
        assert seen == [] and sink.getvalue() == ""
        monkeypatch.undo()
        hclog.get_logger("raft").info("loud")
        assert seen == ["loud"] and sink.getvalue().endswith("[INFO]  raft: loud\n")
    finally:
        hclog.remove_processor(tap)


def test_emit_and_json_switch(sink, tz):
    tz("UTC0")
    hclog.emit_fields("INFO", "raft", "election won", [("term", 2), ("tally", 1)])
    hclog.configure("info", "JSON", sink)
    hclog.emit_fields("INFO", "raft", "election won", [("term", 2), ("tally", 1)])
    hclog.get_logger("raft.net").info("accepted connection", **{"local-address": "127.0.0.1:1"})
    first, second, third = sink.getvalue().splitlines()
    assert first.endswith("Z [INFO]  raft: election won: term=2 tally=1")
    assert json.loads(second) | {"@timestamp": None} == {
        "@level": "info", "@message": "election won", "@module": "raft",
        "@timestamp": None, "term": 2, "tally": 1}
    assert json.loads(third)["@module"] == "raft.net"


def test_emit_fields_keeps_pairs_keywords_cannot_carry(sink):
    hclog.emit_fields("WARN", "raft", "m", [("k", 1), ("k", 2), ("event", "x"), ("self", 3)])
    hclog.log_effect(Log("INFO", "raft.autopilot", "Promoting server", (("id", Bare("n2")),)))
    assert [ln.split(" ", 1)[1] for ln in sink.getvalue().splitlines()] == [
        "[WARN]  raft: m: k=1 k=2 event=x self=3",
        "[INFO]  raft.autopilot: Promoting server: id=n2",
    ]


def test_log_fields_follows_bound_pairs_and_the_level(sink):
    log = hclog.get_logger("raft.snapshot").bind(id="2-32-1")
    store_log = log.log_fields  # the (level, message, fields) callable the stores take
    store_log("INFO", "creating new snapshot", [("path", "/data/snapshots/2-32-1.tmp")])
    store_log("DEBUG", "not at INFO", [("k", 1)])
    store_log("warn", "found temporary snapshot", ())
    assert [ln.split(" ", 1)[1] for ln in sink.getvalue().splitlines()] == [
        "[INFO]  raft.snapshot: creating new snapshot: id=2-32-1 path=/data/snapshots/2-32-1.tmp",
        "[WARN]  raft.snapshot: found temporary snapshot: id=2-32-1",
    ]
    with pytest.raises(ValueError, match="unknown log level"):
        store_log("NOTICE", "m", ())


def test_log_takes_a_level_name(sink):
    log = hclog.get_logger("raft")
    for level in ("INFO", "warn", "WARNING", "Error", "debug"):
        log.log(level, level, k=1)
    assert [ln.split(" ", 1)[1] for ln in sink.getvalue().splitlines()] == [
        "[INFO]  raft: INFO: k=1", "[WARN]  raft: warn: k=1", "[WARN]  raft: WARNING: k=1",
        "[ERROR] raft: Error: k=1"]
    with pytest.raises(ValueError, match="unknown log level 'NOTICE'"):
        log.log("NOTICE", "m")


def test_configure_reaches_loggers_already_used(tz):
    tz("UTC0")
    log = hclog.get_logger("raft")
    first, second = io.StringIO(), io.StringIO()
    try:
        hclog.configure("INFO", "text", first)
        log.debug("dropped")
        log.info("one", k=1)
        hclog.configure("DEBUG", "json", second)
        log.debug("two", k=2)
        # also structlog's own lazy loggers, cached on first use
        structlog.get_logger("raft.net").debug("three")
    finally:
        hclog.configure()
    assert first.getvalue().endswith("Z [INFO]  raft: one: k=1\n") and first.getvalue().count("\n") == 1
    assert [json.loads(ln)["@message"] for ln in second.getvalue().splitlines()] == ["two", "three"]
    assert json.loads(second.getvalue().splitlines()[1])["@module"] == "raft.net"


def test_one_write_per_line(sink):
    writes = []

    class Recorder(io.StringIO):
        def write(self, s):
            writes.append(s)
            return super().write(s)

    rec = Recorder()
    hclog.configure("INFO", "hclog", rec)
    hclog.get_logger("raft").info("multi", a=1, text="x\ny")
    assert len(writes) == 1 and writes[0].endswith("  | y\n  \n")


def test_default_stream_is_stderr_at_write_time(capsys):
    hclog.configure()
    hclog.emit_fields("WARN", "raft", "to stderr", ())
    assert capsys.readouterr().err.endswith("[WARN]  raft: to stderr\n")


@pytest.mark.parametrize("kwargs, match", [
    ({"level": "VERBOSE"}, "unknown log level 'VERBOSE'"),
    ({"level": ""}, "unknown log level"),
    ({"fmt": "logfmt"}, "unknown log format 'logfmt'"),
])
def test_invalid_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hclog.configure(**kwargs)
    with pytest.raises(ValueError, match="unknown log level"):
        hclog.is_enabled("NOTICE")
