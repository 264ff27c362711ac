"""The event ring buffer behind /ui: fed by hclog, bounded, read by sequence."""

from __future__ import annotations

import io
from datetime import timedelta

from raftkv.observability import hclog
from raftkv.observability.eventlog import EventRing
from raftkv.observability.hclog import Bare


def test_ring_keeps_written_lines_in_order_and_bounded():
    stream = io.StringIO()
    hclog.configure("INFO", "hclog", stream=stream)
    ring = EventRing("n1", size=3).attach()
    try:
        hclog.emit_fields("DEBUG", "raft", "not written at INFO", [])
        hclog.emit_fields("INFO", "raft", "election won", [("term", 2), ("tally", 1)])
        hclog.get_logger("raft.autopilot").info("Promoting server", id=Bare("n2"), address="127.0.0.1:9001")
        hclog.emit_fields("WARN", "raft", "heartbeat timeout reached, starting election",
                   [("last-leader-addr", Bare("")), ("backoff", timedelta(milliseconds=500))])
        hclog.emit_fields("ERROR", "raft", "failed to appendEntries to", [("peer", None), ("ok", False)])
    finally:
        ring.detach()
        hclog.configure("INFO", "hclog")
    hclog.emit_fields("INFO", "raft", "after detach", [])

    records = ring.since(0)
    assert [r["message"] for r in records] == ["Promoting server", "heartbeat timeout reached, starting election",
                                               "failed to appendEntries to"]  # the first one fell off
    assert [r["seq"] for r in records] == [2, 3, 4]
    assert records[0] == {**records[0], "node": "n1", "level": "INFO", "logger": "raft.autopilot",
                          "fields": [["id", "n2"], ["address", "127.0.0.1:9001"]]}
    assert records[1]["fields"] == [["last-leader-addr", ""], ["backoff", "500ms"]]
    assert records[2]["fields"] == [["peer", "<nil>"], ["ok", "false"]]
    assert ring.last_seq == 4
    assert [r["seq"] for r in ring.since(3)] == [4]
    assert [r["seq"] for r in ring.since(0, limit=1)] == [4]
    # what was written is exactly what was recorded
    assert stream.getvalue().count("\n") == 4 and "not written" not in stream.getvalue()
