"""The in-process transport: asynchronous delivery, per-link order, and the
fault controls tests use to partition, lose and delay traffic."""

from __future__ import annotations

import asyncio
import io

import pytest

from raftkv.raft.messages import InstallSnapshot, SnapshotMeta, TimeoutNow
from raftkv.transport.memory import MemoryNetwork


@pytest.fixture
async def net(make_inbox):
    """Three started transports n1..n3 on one network: (network, inboxes)."""
    network = MemoryNetwork()
    inboxes = {}
    transports = {}
    for node_id in ("n1", "n2", "n3"):
        inboxes[node_id] = make_inbox()
        transports[node_id] = network.transport(node_id, inboxes[node_id], address=f"mem:{node_id}")
        await transports[node_id].start()
    network.t = transports
    yield network, inboxes
    for t in transports.values():
        await t.close()


def send(network: MemoryNetwork, src: str, dst: str, term: int) -> None:
    network.t[src].send(dst, f"mem:{dst}", TimeoutNow(term, src))


def terms(inbox, src: str) -> list[int]:
    return [m.term for f, m in inbox.items if f == src]


async def flush(network: MemoryNetwork, watch, src: str = "n3", dst: str = "n1") -> None:
    """Wait until a marker sent now on an unfaulted link has arrived: links
    deliver through call_soon in send order, so every undelayed message sent
    before it, on any link, has then been delivered or dropped."""
    inbox = network.t[dst].handler
    before = len(inbox.items)
    network.t[src].send(dst, f"mem:{dst}", TimeoutNow(-1, src))
    await watch.until(lambda: len(inbox.items) > before)
    inbox.items[:] = [(f, m) for f, m in inbox.items if m.term != -1]


async def test_delivery_is_asynchronous_and_in_order(net, watch):
    network, inboxes = net
    for i in range(100):
        send(network, "n1", "n2", i)
    assert inboxes["n2"].items == []  # never re-entrant: delivery waits for the loop
    await watch.until(lambda: len(inboxes["n2"].items) == 100)
    assert terms(inboxes["n2"], "n1") == list(range(100))
    assert network.delivered == 100


async def test_routes_by_address(net, watch):
    network, inboxes = net
    network.t["n1"].send("n2", "mem:n3", TimeoutNow(1, "n1"))  # stale address: whoever owns it
    network.t["n1"].send("n2", "mem:nobody", TimeoutNow(2, "n1"))
    await watch.until(lambda: inboxes["n3"].items)
    await flush(network, watch)
    assert inboxes["n3"].items == [("n1", TimeoutNow(1, "n1"))]
    assert inboxes["n2"].items == []
    assert network.dropped == 1


async def test_isolate_drops_traffic_both_ways_until_rejoined(net, watch):
    network, inboxes = net
    network.isolate("n2")
    send(network, "n1", "n2", 1)
    send(network, "n2", "n1", 2)
    send(network, "n1", "n3", 3)
    await watch.until(lambda: inboxes["n3"].items)
    await flush(network, watch, "n3", "n1")
    assert inboxes["n2"].items == [] and inboxes["n1"].items == []
    network.rejoin("n2")
    send(network, "n1", "n2", 4)
    send(network, "n2", "n1", 5)
    await watch.until(lambda: inboxes["n2"].items and inboxes["n1"].items)
    assert terms(inboxes["n2"], "n1") == [4] and terms(inboxes["n1"], "n2") == [5]


async def test_one_way_block(net, watch):
    network, inboxes = net
    network.block("n1", "n2")
    send(network, "n1", "n2", 1)
    send(network, "n2", "n1", 2)
    await watch.until(lambda: inboxes["n1"].items)
    await flush(network, watch, "n3", "n2")
    assert inboxes["n2"].items == []
    network.unblock("n1", "n2")
    send(network, "n1", "n2", 3)
    await watch.until(lambda: inboxes["n2"].items)
    assert terms(inboxes["n2"], "n1") == [3]


async def test_delay_postpones_delivery_and_keeps_link_order(net, watch):
    network, inboxes = net
    loop = asyncio.get_running_loop()
    arrived: list[tuple[float, int]] = []
    inner = inboxes["n2"]

    def timed(from_id, message):
        arrived.append((loop.time(), message.term))
        inner(from_id, message)

    network.t["n2"].handler = timed
    network.delay(80, from_id="n1", to_id="n2")
    start = loop.time()
    send(network, "n1", "n2", 1)
    send(network, "n1", "n2", 2)
    network.delay(0, from_id="n1", to_id="n2")  # later messages must not overtake
    send(network, "n1", "n2", 3)
    send(network, "n3", "n2", 9)  # other links are not delayed
    await watch.until(lambda: len(arrived) == 4)
    assert [t for _, t in arrived] == [9, 1, 2, 3]
    assert arrived[1][0] - start >= 0.08


async def test_delay_rules_match_any_node_and_heal_clears_them(net, watch):
    network, _ = net
    network.delay(30, to_id="n2")
    network.delay(50)
    assert network.delay_ms("n1", "n2") == 50
    assert network.delay_ms("n3", "n1") == 50
    network.delay(0)
    assert network.delay_ms("n1", "n2") == 30 and network.delay_ms("n2", "n1") == 0
    network.isolate("n1")
    network.block("n2", "n3")
    network.heal()
    assert network.delay_ms("n1", "n2") == 0
    assert network.can_deliver("n1", "n2") and network.can_deliver("n2", "n3")


async def test_partition_swallows_messages_already_in_flight(net, watch):
    network, inboxes = net
    network.delay(50, from_id="n1")
    send(network, "n1", "n2", 1)
    network.isolate("n2")
    network.delay(0, from_id="n1")
    network.delay(60, from_id="n3")
    marker_sent = len(inboxes["n1"].items)
    send(network, "n3", "n1", 7)  # arrives after n1's delayed message was due
    await watch.until(lambda: len(inboxes["n1"].items) > marker_sent)
    assert inboxes["n2"].items == []
    assert network.dropped == 1


async def test_closed_transport_neither_sends_nor_receives(net, watch):
    network, inboxes = net
    await network.t["n2"].close()
    send(network, "n1", "n2", 1)
    send(network, "n2", "n1", 2)
    await flush(network, watch)
    assert inboxes["n2"].items == [] and inboxes["n1"].items == []
    assert network.dropped == 2


async def test_address_in_use(net):
    network, _ = net
    t = network.transport("n4", lambda f, m: None, address="mem:n1")
    with pytest.raises(OSError, match="address already in use"):
        await t.start()


class Sink:
    def __init__(self):
        self.buf = io.BytesIO()
        self.cancelled = False

    def write(self, data):
        self.buf.write(data)

    def close(self):
        return ("stored", self.buf.getvalue())

    def cancel(self):
        self.cancelled = True


async def test_snapshot_is_copied_through_source_and_sink(watch, make_inbox):
    network = MemoryNetwork()
    got = make_inbox()
    failed: list[str] = []
    payload = bytes(range(256)) * 9000
    a = network.transport("n1", make_inbox(), snapshot_source=lambda meta: io.BytesIO(payload),
                          on_snapshot_failed=failed.append)
    b = network.transport("n2", got, snapshot_sink=lambda from_id, meta: Sink())
    await a.start()
    await b.start()
    meta = SnapshotMeta(10, 2, size=len(payload))
    a.send("n2", "n2", InstallSnapshot(2, "n1", "n1", meta))
    await watch.until(lambda: got.items)
    [(from_id, offer)] = got.items
    assert from_id == "n1" and offer.meta == meta and offer.data == ("stored", payload)

    network.isolate("n2")
    a.send("n2", "n2", InstallSnapshot(2, "n1", "n1", meta))
    await watch.until(lambda: failed)
    assert failed == ["n2"]
    await a.close()
    await b.close()


async def test_codec_check_round_trips_messages(watch, make_inbox):
    network = MemoryNetwork()
    got = make_inbox()
    a = network.transport("n1", make_inbox(), codec_check=True)
    b = network.transport("n2", got)
    await a.start()
    await b.start()
    handle = object()
    a.send("n2", "n2", TimeoutNow(3, "n1"))
    a.send("n2", "n2", InstallSnapshot(2, "n1", "n1", SnapshotMeta(1, 1), data=handle))
    await watch.until(lambda: len(got.items) == 2)
    assert got.items[0] == ("n1", TimeoutNow(3, "n1"))
    assert got.items[1][1].data is handle  # in-process handles pass through untouched
    await a.close()
    await b.close()
