"""HotPathProtocol without a server: framing decisions and the idle sweep."""

from __future__ import annotations

import asyncio
import time

import pytest

from raftkv import hotpath
from raftkv.hotpath import HotPathProtocol, HotPathSite


class FakeTransport:
    def __init__(self):
        self.closed = False
        self.protocol = None
        self.reading = True

    def close(self):
        self.closed = True

    def get_extra_info(self, name):
        return ("127.0.0.1", 1) if name == "peername" else None

    def set_protocol(self, protocol):
        self.protocol = protocol

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True


class Recorder:
    def __init__(self):
        self.connected = None
        self.data = b""

    def connection_made(self, transport):
        self.connected = transport

    def data_received(self, data):
        self.data += data


class FakeSite:
    def __init__(self):
        self.connections = set()
        self.routes = {}
        self.handed = []

    def fallback(self):
        r = Recorder()
        self.handed.append(r)
        return r


def connect(site):
    p = HotPathProtocol(site)
    t = FakeTransport()
    p.connection_made(t)
    return p, t


@pytest.mark.parametrize("data", [
    b"POST /set HTTP/1.1\r\n\r\n",
    b"GET /status HTTP/1.1\r\n\r\n",
    b"GET /get?key=a HTTP/1.0\r\n\r\n",
    b"GET /get?key=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /get?key=a;b HTTP/1.1\r\n\r\n",
    b"GET /get?key=%zz HTTP/1.1\r\n\r\n",
    b"GET /get?key=\xff HTTP/1.1\r\n\r\n",
    b"GET /get?key=a HTTP/1.1\r\nbad header line\r\n\r\n",
])
async def test_what_it_does_not_serve_is_handed_over_whole(data):
    site = FakeSite()
    p, t = connect(site)
    p.data_received(data[:5])
    (t.protocol or p).data_received(data[5:])  # as the transport does after a hand-over
    assert len(site.handed) == 1 and t.protocol is site.handed[0]
    assert site.handed[0].connected is t and site.handed[0].data == data
    assert p not in site.connections


async def test_a_partial_hot_head_waits_for_the_rest():
    site = FakeSite()
    p, t = connect(site)
    p.data_received(b"GET /g")
    p.data_received(b"et?key=a HTTP/1.1\r\nHost: x\r\n")
    assert not site.handed  # still waiting for the blank line; no route table here
    p.data_received(b"\r\n")
    assert len(site.handed) == 1  # unknown route in this fake site: aiohttp answers it
    assert site.handed[0].data == b"GET /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_idle_connections_are_swept(monkeypatch):
    monkeypatch.setattr(hotpath, "IDLE_TIMEOUT", 0.05)
    site = FakeSite()
    busy, busy_t = connect(site)
    busy._busy = True
    idle, idle_t = connect(site)
    task = asyncio.get_running_loop().create_task(HotPathSite._close_idle(site))
    deadline = time.monotonic() + 5
    while not idle_t.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    task.cancel()
    assert idle_t.closed and not busy_t.closed
