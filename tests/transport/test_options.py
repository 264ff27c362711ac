"""TransportOptions: the defaults the transports' keyword arguments had, the
frame limit each protocol fills in, and what the hashicorp wire refuses."""

from __future__ import annotations

import dataclasses
import ssl

import pytest

from raftkv.transport.hashicorp_protocol.transport import HashicorpTransport
from raftkv.transport.options import TransportOptions
from raftkv.transport.raftkv_protocol.tcp import TcpTransport

MiB = 1024 * 1024


def _handler(from_id, message):
    """The transports here are built, never sent to: nothing arrives."""


def test_the_defaults_are_the_old_keyword_defaults():
    options = TransportOptions()
    assert {f.name: getattr(options, f.name) for f in dataclasses.fields(options)} == {
        "advertise": None, "max_frame": None, "max_held": None, "max_connections": 256,
        "max_queue_frames": 1024, "max_queue_bytes": 64 * MiB, "snapshot_chunk_size": MiB,
        "dial_timeout": 5.0, "io_timeout": 10.0, "snapshot_ack_timeout": 120.0, "idle_timeout": 60.0,
        "stranger_snapshot_after": 1.0, "backoff_base": 0.010, "backoff_cap": 0.5, "log_interval": 5.0,
        "authenticate": None, "server_ssl": None, "client_ssl": None, "faults": None,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.io_timeout = 1.0


def test_each_protocol_fills_in_its_own_frame_limit():
    tcp = TcpTransport("n1", "127.0.0.1", 0, _handler).options
    assert (tcp.max_frame, tcp.max_held) == (8 * MiB, 32 * MiB)
    hashicorp = HashicorpTransport("n1", "127.0.0.1", 0, _handler).options
    assert hashicorp.max_frame == 64 * MiB
    chosen = TcpTransport("n1", "127.0.0.1", 0, _handler, TransportOptions(max_frame=2 * MiB, max_held=3)).options
    assert (chosen.max_frame, chosen.max_held) == (2 * MiB, 3)
    with pytest.raises(ValueError, match="snapshot_chunk_size"):
        TcpTransport("n1", "127.0.0.1", 0, _handler, TransportOptions(max_frame=MiB))


@pytest.mark.parametrize("options", [
    TransportOptions(authenticate="a cluster key"),
    TransportOptions(server_ssl=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)),
    TransportOptions(client_ssl=ssl.create_default_context()),
], ids=["cluster key", "server TLS", "client TLS"])
def test_hashicorp_refuses_what_its_wire_cannot_carry(options):
    with pytest.raises(NotImplementedError, match="RAFT_PROTOCOL=hashicorp"):
        HashicorpTransport("n1", "127.0.0.1", 0, _handler, options)
