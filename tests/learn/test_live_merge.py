"""The learning page's live source without HTTP: the step tap of a node and
the merge of every member's records into frames, fed from a simulated
cluster (whose network knows the truth about every message) or by hand."""

from __future__ import annotations

import json
import math

import pytest

from raftkv.learn.live import StepTap
from raftkv.learn.merge import LOST_MS, Merge, SseParser, is_heartbeat
from raftkv.learn.picture import LogShape, message_view
from raftkv.learn.world import Spec, World
from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.sim.cluster import SimCluster
from raftkv.sim.state_machine import encode_command

IDS = ["n1", "n2", "n3"]


class Tapped(SimCluster):
    """A simulated cluster whose nodes have step taps, as the runtime's
    driver has one; the network's own account of each message is kept as
    the truth the merge is checked against."""

    def __init__(self, seed: int = 1, wall_offset_ms: float = 0.0, capacity: int | None = None, **kw) -> None:
        super().__init__(seed, IDS, **kw)
        self.taps = {i: StepTap(i, (lambda n=self.nodes[i]: n.raft),
                                wall=lambda: (self.now + wall_offset_ms) / 1000, clock=lambda: self.now / 1000)
                     for i in IDS}
        self.subs = {i: tap.subscribe(capacity=capacity) for i, tap in self.taps.items()}
        self.records: list[dict] = []
        self.truth: dict[int, dict] = {}   # sim message id -> its fate
        self.on_message = self._fate
        self.drop_if = None   # (from, to, message view) -> lose this message on its way
        # one delay for every message: first sent, first received, as over
        # the live transport's connections (one test lets them overtake)
        self.min_delay = self.max_delay = 3

    def _fate(self, message_id, src, dst, msg, arrives, fate) -> None:
        rec = self.truth.setdefault(message_id, {"from": src, "to": dst, "view": message_view(msg)})
        rec.setdefault("sent", self.now)
        if fate == "sent" and self.drop_if is not None and self.drop_if(src, dst, rec["view"]):
            self.drop_message(message_id)
        if fate == "delivered":
            rec["arrive"] = self.now
        elif fate != "sent":
            rec["fate"] = fate

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        effects = node.boot(self.now)
        self._carry_out(node, None, effects, None)
        self.taps[node_id].step(None, effects)

    def step(self, node_id: str, event, label: str | None = None) -> list:
        node = self.nodes[node_id]
        if not node.alive:
            return []
        effects = super().step(node_id, event, label)
        if node.alive:
            self.taps[node_id].step(event, effects)
            self.taps[node_id].persisted()   # the runtime's order: the step, then its fsync
        return effects

    def boot(self) -> "Tapped":
        for i in IDS:
            self.start(i)
        self.bootstrap(IDS)
        return self

    def run(self, until: int) -> list[dict]:
        """Run to ``until`` ms; the records made meanwhile, every node's, by time."""
        self.run_until(until)
        out = []
        for sub in self.subs.values():
            out.extend(sub.take())
        out.sort(key=lambda r: (r["t"], r["node"], r["seq"]))
        self.records.extend(out)
        return out

    def write(self, key: str, value: str, rid: int) -> None:
        self.step(self.leader().id, ev.Propose(rid, encode_command(key, value)))


def _merged(records, **kw) -> list[dict]:
    merge = Merge(IDS, **kw)
    for r in records:
        merge.add(r)
    return merge.frames(math.inf)


def _messages(frames) -> dict[int, dict]:
    """Every message the frames showed, as last seen (its arrival filled in)."""
    seen: dict[int, dict] = {}
    for f in frames:
        for m in f["flight"]:
            if seen.get(m["id"], {}).get("arrive") is None:
                seen[m["id"]] = m
    return seen


def _check_pairs(frames, truth, overtaking: bool = False) -> None:
    """Every receipt names a message an earlier frame sent, and every
    message's send and arrival times are the network's (when messages may
    overtake one another, identical ones may swap their arrivals)."""
    sent_in: dict[int, int] = {}
    for f in frames:
        for message_id in f["sent"]:
            sent_in[message_id] = f["i"]
        if f["delivered"] is not None:
            assert sent_in[f["delivered"]] < f["i"], f
            assert f["delivered"] not in [m["id"] for m in f["flight"]]
    shown = _messages(frames)
    delivered = {f["delivered"]: f for f in frames if f["delivered"] is not None}
    by_link: dict[tuple, list[dict]] = {}
    for t in truth.values():
        by_link.setdefault((t["from"], t["to"]), []).append(t)
    for m in shown.values():
        view = {k: v for k, v in m.items() if k not in ("id", "from", "to", "sent", "arrive")}
        link = by_link[(m["from"], m["to"])]
        matches = [t for t in link if (t.get("sent"), t["view"]) == (m["sent"], view)]
        assert matches, m
        if m["id"] in delivered and m["arrive"] is None:
            # its receipt reached the merge after its send went out: it arrives with its receiver's frame
            assert delivered[m["id"]]["node"] == m["to"] and delivered[m["id"]]["t"] >= m["sent"]
        elif m["id"] in delivered:
            if overtaking:
                matches = [t for t in link if t["view"] == view]
            assert m["arrive"] in [t.get("arrive") for t in matches], m
            assert delivered[m["id"]]["t"] >= m["sent"]


def _frames_json(frames) -> str:
    return json.dumps(frames, sort_keys=True)


# --- the tap -------------------------------------------------------------------------

def test_a_step_record_says_what_the_core_did_in_the_pictures_terms():
    c = Tapped(wall_offset_ms=1_000_000).boot()
    records = c.run(2000)
    assert {r["node"] for r in records} == set(IDS)
    for r in records:
        assert set(r) == {"node", "t", "seq", "event", "sends", "logs", "narration", "view"}
        assert r["view"]["id"] == r["node"] and r["view"]["up"]
        for s in r["sends"]:
            assert set(s) >= {"to", "type", "label"}
    # the clock is the wall clock; the election timer too, converted from the core's
    assert min(r["t"] for r in records) >= 1_000_000
    for node_id, node in c.nodes.items():
        last = [r for r in records if r["node"] == node_id][-1]
        if node.raft.role == "Follower":  # a step that moved the timer made a record
            started, runs_out = last["view"]["timer"]
            assert runs_out == node.raft.election_deadline + 1_000_000
            assert started <= last["t"] < runs_out
    leader = next(r for r in records if r["view"]["role"] == "Leader")
    assert leader["view"]["timer"] is None
    # each node's records are numbered in order, starting with its start
    for node in IDS:
        mine = [r for r in records if r["node"] == node]
        assert mine[0]["event"]["type"] == "Start" and mine[0]["narration"]
        assert [r["seq"] for r in mine] == list(range(1, len(mine) + 1))
    # hclog lines as the simulator renders them, and the election's story
    lines = [line for r in records for line in r["logs"]]
    assert any("entering candidate state" in line for line in lines)
    assert any("is the leader of term" in s["text"] and s["function"] == "Election._count_vote"
               for r in records for s in r["narration"])
    # a timer that found nothing to do is no record; every receipt is one
    ticks = [r for r in records if r["event"]["type"] == "Tick"]
    assert all(r["sends"] or r["logs"] for r in ticks)
    assert len([r for r in records if r["event"]["type"] == "Receive"]) == sum(
        1 for t in c.truth.values() if "arrive" in t)


def test_the_tap_follows_the_log_through_writes_and_compaction():
    c = Tapped(seed=3).boot()
    c.run(1000)
    for i in range(150):  # SIM_CONFIG snapshots every 40 entries and compacts the log
        c.write(f"k{i}", str(i), i + 1)
        c.run(c.now + 7)
    c.run(c.now + 500)
    assert any(n.raft.log.base_index > 0 for n in c.nodes.values())
    for node_id, node in c.nodes.items():
        last = [r for r in c.records if r["node"] == node_id][-1]
        assert last["view"]["log"] == LogShape.of(node.raft.log).view(), node_id
        assert last["view"]["last"] == node.raft.log.last_index


def test_an_append_is_recorded_in_memory_then_fsynced_with_what_waited_for_it():
    c = Tapped(seed=3).boot()
    c.run(1000)
    leader = c.leader().id
    c.write("k", "v", 1)
    records = c.run(c.now + 200)
    mine = [r for r in records if r["node"] == leader]
    proposed, synced = mine[0], mine[1]
    assert proposed["event"]["type"] == "Propose"
    assert proposed["view"]["durable"] == proposed["view"]["last"] - 1
    assert {s["type"] for s in proposed["sends"]} == {"AppendEntries"}   # they leave before the fsync
    assert synced["event"] == {"type": "Fsync", "through": proposed["view"]["last"]}
    assert synced["view"]["durable"] == synced["view"]["last"] and synced["narration"]
    follower = next(i for i, r in enumerate(records) if r["node"] != leader and r["event"]["type"] == "Receive"
                    and r["event"]["message"]["type"] == "AppendEntries" and r["view"]["durable"] < r["view"]["last"])
    got, fsync = records[follower], next(r for r in records[follower + 1:] if r["node"] == records[follower]["node"])
    assert got["sends"] == []                                            # no answer before the disk has it
    assert fsync["event"]["type"] == "Fsync" and [s["type"] for s in fsync["sends"]] == ["AppendEntriesResponse"]
    frames = _merged(c.records)
    assert any(f["label"] == f"{leader} fsyncs its log" for f in frames)


def test_nobody_listening_costs_one_check_and_a_new_listener_starts_from_the_core():
    c = Tapped(seed=2).boot()
    c.run(1000)
    tap = c.taps["n1"]
    tap.unsubscribe(c.subs["n1"])
    assert not tap.listening and tap.subscribers == 0
    seq = tap.seq
    c.run(2000)
    assert tap.seq == seq  # the cluster only calls the tap while it listens ...

    class Counting(Tapped):
        calls = 0

        def step(self, node_id, event, label=None):
            node = self.nodes[node_id]
            if not node.alive:
                return []
            effects = SimCluster.step(self, node_id, event, label)
            tap = self.taps[node_id]
            if tap.listening:  # ... as the runtime's driver does
                Counting.calls += 1
                tap.step(event, effects)
            return effects
    d = Counting(seed=2).boot()
    for sub_node, sub in d.subs.items():
        d.taps[sub_node].unsubscribe(sub)
    Counting.calls = 0
    d.run(2000)
    assert Counting.calls == 0
    # a new subscriber: the node's view and log now, then its steps
    sub = d.taps["n2"].subscribe()
    hello = d.taps["n2"].hello()
    assert hello["node"] == "n2" and hello["view"]["log"] == LogShape.of(d.nodes["n2"].raft.log).view()
    d.run(2500)
    assert sub.take() and Counting.calls > 0


def test_a_slow_subscriber_loses_the_oldest_records_and_is_told_how_many():
    c = Tapped(seed=1)
    slow = c.taps["n1"].subscribe(capacity=5)
    c.boot()
    c.run(1000)
    everything = [r for r in c.records if r["node"] == "n1"]
    assert len(everything) > 5
    got = slow.take()
    assert got[0] == {"node": "n1", "skipped": len(everything) - 5}
    assert [r["seq"] for r in got[1:]] == [r["seq"] for r in everything[-5:]]
    assert slow.take() == []  # told once


def test_a_step_the_tap_cannot_describe_never_reaches_the_node():
    def broken():
        raise RuntimeError("no core")
    tap = StepTap("n9", lambda: None)
    sub = tap.subscribe()
    tap._core = broken
    tap.step(ev.Tick(5), [fx.Log("INFO", "raft", "x", ())])  # logged, left out
    assert sub.take() == []
    assert tap.hello()["view"] == {"id": "n9", "up": False, "role": "Down"}


# --- the merge -----------------------------------------------------------------------

def test_frames_have_the_simulators_shape():
    c = Tapped(seed=5).boot()
    frames = _merged(c.run(1500))
    sim = World(Spec(seed=5)).frames(0, 40)
    assert frames and all(set(f) == set(sim[-1]) for f in frames)
    assert [f["i"] for f in frames] == list(range(len(frames)))
    assert all(a["t"] <= b["t"] for a, b in zip(frames, frames[1:]))
    sim_node = next(n for n in sim[-1]["nodes"] if n["up"])
    for f in frames[10:]:
        assert [n["id"] for n in f["nodes"]] == IDS
        assert all(set(n) == set(sim_node) for n in f["nodes"])
        assert f["clients"] == [] and f["cut"] == []
        for m in f["flight"]:
            assert set(m) >= {"id", "from", "to", "sent", "arrive", "type", "label"}


def test_every_receipt_is_paired_with_its_send_as_the_network_saw_it():
    c = Tapped(seed=7).boot()
    c.run(800)
    for i in range(20):
        c.write(f"k{i}", "v", i + 1)
        c.run(c.now + 3)
    c.run(c.now + 400)
    frames = _merged(c.records)
    _check_pairs(frames, c.truth)
    delivered = [f for f in frames if f["delivered"] is not None]
    assert len(delivered) == sum(1 for t in c.truth.values() if "arrive" in t)
    types = {m["type"] for m in _messages(frames).values()}
    assert {"RequestVote", "RequestVoteResponse", "AppendEntries", "AppendEntriesResponse"} <= types
    # the hold lets the receipt be known when the send goes out
    assert all(m["arrive"] is not None for m in _messages(frames).values())


def test_messages_that_overtake_one_another_are_paired_by_their_content():
    c = Tapped(seed=7).boot()
    c.min_delay, c.max_delay = 1, 9
    c.run(800)
    for i in range(20):
        c.write(f"k{i}", "v", i + 1)
        c.run(c.now + 3)
    c.run(c.now + 400)
    frames = _merged(c.records)
    _check_pairs(frames, c.truth, overtaking=True)
    assert len([f for f in frames if f["delivered"] is not None]) == sum(1 for t in c.truth.values() if "arrive" in t)


def test_records_arriving_out_of_order_within_the_hold_make_the_same_frames():
    c = Tapped(seed=8).boot()
    records = c.run(1500)
    at_once = _merged(records)
    delay = {"n1": 0, "n2": 120, "n3": 250}   # how late each member's records reach the merge
    merge = Merge(IDS)
    frames = []
    for r in sorted(records, key=lambda r: r["t"] + delay[r["node"]]):
        now = r["t"] + delay[r["node"]]
        frames.extend(merge.frames(now))
        merge.add(r)
    frames.extend(merge.frames(math.inf))
    assert _frames_json(frames) == _frames_json(at_once)


def test_records_later_than_the_hold_still_pair_and_time_never_goes_back():
    c = Tapped(seed=8).boot()
    records = c.run(1500)
    merge = Merge(IDS)
    frames = []
    for r in sorted(records, key=lambda r: r["t"] + (1000 if r["node"] == "n3" else 0)):
        frames.extend(merge.frames(r["t"] + (1000 if r["node"] == "n3" else 0)))
        merge.add(r)
    frames.extend(merge.frames(math.inf))
    assert all(a["t"] <= b["t"] for a, b in zip(frames, frames[1:]))
    _check_pairs(frames, c.truth)
    # n3's receipts reach the merge late: they still find their sends
    delivered = {f["delivered"] for f in frames}
    to_n3 = [m for m in _messages(frames).values() if m["to"] == "n3" and m["sent"] < 1400]
    assert to_n3 and all(m["id"] in delivered for m in to_n3)
    assert any(m["arrive"] is None for m in to_n3)


def test_a_receivers_clock_behind_the_senders_still_puts_the_receipt_after_the_send():
    c = Tapped(seed=9).boot()
    records = [dict(r, t=r["t"] - 40) if r["node"] == "n2" else r for r in c.run(1500)]
    frames = _merged(records)
    sent_in = {m: f["i"] for f in frames for m in f["sent"]}
    assert any(f["delivered"] is not None and f["node"] == "n2" for f in frames)
    for f in frames:
        if f["delivered"] is not None:
            assert sent_in[f["delivered"]] < f["i"]


def test_a_message_never_received_leaves_flight_after_five_seconds():
    c = Tapped(seed=11).boot()
    c.run(1000)
    # the network loses the first two appends of a write to n3 (the leader sends them again)
    c.drop_if = lambda src, dst, view: dst == "n3" and view["type"] == "AppendEntries" and view["count"] > 0
    c.write("x", "1", 1)
    c.run(c.now + 2)
    c.write("y", "2", 2)
    c.run(c.now + 2)
    c.drop_if = None
    c.run(9000)
    frames = _merged(c.records)
    lost = sorted((t["sent"], t["view"]["prev"]) for t in c.truth.values() if t.get("fate") == "dropped")
    assert len(lost) == 2
    shown = _messages(frames)
    never = [m for m in shown.values() if m["arrive"] is None and m["sent"] < 8000]
    assert sorted((m["sent"], m["prev"]) for m in never) == lost
    for m in never:
        times = [f["t"] for f in frames if m["id"] in {x["id"] for x in f["flight"]}]
        assert max(times) - m["sent"] <= LOST_MS
        assert all(m["id"] != f["delivered"] for f in frames)
    assert not any(x["id"] in {m["id"] for m in never} for x in frames[-1]["flight"])
    assert frames[-1]["nodes"][2]["last"] == frames[-1]["nodes"][0]["last"]  # n3 caught up
    _check_pairs(frames, c.truth)


def test_an_election_after_the_leader_dies_and_messages_to_it_are_cut():
    c = Tapped(seed=12).boot()
    merge = Merge(IDS)
    for r in c.run(1000):
        merge.add(r)
    frames = merge.frames(math.inf)
    dead = c.leader().id
    c.crash(dead)
    merge.member_down(dead, "stopped streaming")
    for r in c.run(3000):
        merge.add(r)
    after = merge.frames(math.inf)
    assert all(f["node"] != dead for f in after)
    assert all(next(n for n in f["nodes"] if n["id"] == dead) == {"id": dead, "up": False, "role": "Down"}
               for f in after)
    assert any(m["type"] == "RequestVote" for f in after for m in f["flight"])
    assert any(n["role"] == "Candidate" for f in after for n in f["nodes"])
    assert any(n["role"] == "Leader" for n in after[-1]["nodes"])
    cut = [m for f in after for m in f["cut"]]
    assert cut and all(m["to"] == dead for m in cut)
    assert not any(m["to"] == dead for f in after for m in f["flight"] if m["sent"] > 1000)
    merge.hello(dead, None)
    assert merge.nodes()[IDS.index(dead)]["up"] is False  # still nothing heard from it
    assert frames and _check_pairs(frames + after, c.truth) is None


def test_heartbeats_can_be_left_out_but_not_a_read_round():
    c = Tapped(seed=13).boot()
    c.run(1000)
    c.write("x", "1", 1)
    c.run(1100)
    c.step(c.leader().id, ev.ReadIndex(2))
    records = c.run(1600)
    everything = _merged(c.records)
    quiet = _merged(c.records, heartbeats=False)
    assert any(is_heartbeat(m) for f in everything for m in f["flight"])
    assert len(quiet) < len(everything) / 2
    for f in quiet:
        for m in f["flight"] + f["cut"]:
            assert not is_heartbeat(m), m
        if f["event"]["type"] == "Receive" and is_heartbeat(f["event"]["message"]):
            # only a heartbeat that moved its node's picture (a commit) makes a frame, with no arrow
            assert f["delivered"] is None and f["sent"] == []
            assert any("committed" in s["text"] for s in f["narration"])
    reads = [m for f in quiet for m in f["flight"] if m.get("read_seq")]
    assert {m["type"] for m in reads} == {"AppendEntries", "AppendEntriesResponse"}
    # a heartbeat left out still moves its node's picture: the followers' commit shows
    assert all(n["commit"] == everything[-1]["nodes"][0]["commit"] for n in quiet[-1]["nodes"])
    _check_pairs(quiet, c.truth)
    assert records


def test_the_merge_holds_a_bounded_number_of_records():
    c = Tapped(seed=14).boot()
    records = c.run(1500)
    merge = Merge(IDS, capacity=50)
    for r in records:
        merge.add(r)
    merge.add({"node": "n2", "skipped": 7})
    skipped = merge.take_skipped()
    assert sum(skipped.values()) == len(records) - 50 + 7 and skipped["n2"] >= 7
    assert merge.take_skipped() == {}
    assert len(merge.frames(math.inf)) <= 50


def test_a_member_not_heard_from_is_drawn_down():
    merge = Merge(["n1", "n2"])
    view = {"id": "n1", "up": True, "role": "Follower", "term": 1, "timer": [1.0, 2.0]}
    merge.hello("n1", view)
    merge.add({"node": "n1", "t": 10.0, "seq": 1, "event": {"type": "Tick"}, "sends": [], "logs": ["[INFO]  raft: x"],
               "narration": [], "view": view})
    greeting, frame = merge.frames(10_000)
    # a stream that opens is a frame of its own: a quiet cluster makes no other
    assert greeting["event"] == {"type": "Hello"} and greeting["node"] == "n1" and greeting["i"] == 0
    assert "Now watching n1: a follower in term 1" in greeting["narration"][0]["text"]
    assert greeting["nodes"] == frame["nodes"] == [view, {"id": "n2", "up": False, "role": "Down"}]
    assert frame["label"] == "n1's timer" and frame["t"] == 10.0
    # only the timer moved: no frame
    merge.add({"node": "n1", "t": 20.0, "seq": 2, "event": {"type": "Tick"}, "sends": [], "logs": [],
               "narration": [], "view": dict(view, timer=[3.0, 4.0])})
    assert merge.frames(10_000) == []


@pytest.mark.parametrize("chunks", [
    [b"event: hello\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: step\ndata: {\"b\":2}\n\n"],
    [b"event: hel", b"lo\ndata: {\"a\"", b":1}\n", b"\n: keep-alive\n\nevent: step\nid: 4\ndata:{\"b\":2}\n\n"],
])
def test_the_event_stream_parser(chunks):
    parser = SseParser()
    got = [e for chunk in chunks for e in parser.feed(chunk)]
    assert got == [("hello", '{"a":1}'), ("step", '{"b":2}')]
    with pytest.raises(ValueError):
        SseParser(limit=10).feed(b"data: " + b"x" * 20)
