"""The transport contract: what the node runtime asks of a transport.

Theory of operation
-------------------
The core names a destination by id and address in its ``Send`` effect and never
waits for an answer: an answer is just another message that arrives later. A
transport is therefore a one-way mail service, and :class:`Transport` lists
exactly the calls ``raftkv/node/runtime.py`` (and, through its ``_Network``,
``raftkv/node/executor.py``) makes on one: ``start``, ``send``,
``learn_configuration``, ``disconnect``, ``close``. Three transports keep it:
:mod:`.raftkv_protocol.tcp` (raftkv's own frames),
:mod:`.hashicorp_protocol.transport` (hashicorp/raft 1.1.2's net_transport
wire) and :mod:`.memory` (in-process, for tests);
``tests/transport/test_contract.py`` checks all three against this class.

The other half of the contract runs the other way, through callables handed
to a transport's constructor (hashicorp/raft's ``Consumer()`` channel, the
Python way):

``handler(from_id, message)``
    every message received, on the event loop, synchronously, in the order
    it arrived on its connection. It must not block. A handler that raises
    is logged (``failed to handle incoming command``) and the connection
    carries on. An ``InstallSnapshot`` arrives only once its bytes are
    stored, with ``data=`` the handle the sink's ``close()`` returned.
``log(level, logger, message, fields)``
    the transport's lines, already in hashicorp's words (:mod:`.gotext`);
    ``raftkv.observability.hclog.emit_fields`` in a live node.
``describe_peer(peer_id)``
    how a peer is printed in a line (hashicorp's ``{Voter n2 host:port}``).
``snapshot_source(meta)`` / ``snapshot_sink(from_id, meta)``
    where an outgoing snapshot's bytes are read (a :class:`SnapshotSource`)
    and an incoming one's are written (a :class:`SnapshotWriter`). Their
    blocking calls may run in a worker thread, one at a time per snapshot.
``on_snapshot_failed(peer_id)``
    an ``InstallSnapshot`` sent to ``peer_id`` did not get through; the
    core offers it again later.

Who closes what: the runtime owns the transport. It calls ``start`` once and
``close`` once (also after a ``start`` that failed). The transport owns
every connection, task and worker thread it makes and ends them all in
``close``. It closes each snapshot source it opened, and finishes each sink
either with ``close()`` (the handle then belongs to the runtime) or with
``cancel()``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from raftkv.raft.configuration import Configuration
from raftkv.raft.messages import Message

__all__ = ["NET_LOGGER", "RAFT_LOGGER", "Handler", "LogFn", "SnapshotSource", "SnapshotWriter", "Transport",
           "no_log"]

Handler = Callable[[str, Any], None]
"""``handler(from_id, message)``: see the module docstring."""

LogFn = Callable[[str, str, str, list[tuple[str, object]]], None]
"""``log(level, logger, message, fields)``: see the module docstring."""

NET_LOGGER = "raft.net"   # connections, frames, limits
RAFT_LOGGER = "raft"      # failed RPCs and snapshots, as hashicorp/raft's own lines


def no_log(level: str, logger: str, message: str, fields: list[tuple[str, object]]) -> None:
    """The ``log`` of a transport given none."""


class SnapshotSource(Protocol):
    """What ``snapshot_source(meta)`` returns: the stored snapshot, read from
    the start. ``read`` may run in a worker thread; the transport calls
    ``close`` once, whatever happened."""

    def read(self, size: int) -> bytes: ...
    def close(self) -> Any: ...


class SnapshotWriter(Protocol):
    """What ``snapshot_sink`` returns: a place to store a snapshot as it
    arrives. ``close()`` finishes it and returns the runtime's handle;
    ``cancel()`` discards it. ``write``/``close`` may run in a worker thread."""

    def write(self, data: bytes) -> Any: ...
    def close(self) -> Any: ...
    def cancel(self) -> Any: ...


@runtime_checkable
class Transport(Protocol):
    """What the node runtime calls on its transport; see the module docstring."""

    async def start(self) -> None:
        """Bind the listening port and begin accepting connections.

        Raises ``OSError`` if the port cannot be bound; nothing is left
        running then, but ``close()`` is still called and must cope. Peers
        may connect as soon as it returns."""

    def send(self, to_id: str, address: str, message: Message) -> None:
        """Queue ``message`` for ``to_id``, to be delivered at ``address``.

        Synchronous and best effort: it never blocks, never waits for the
        peer, and never raises for network trouble. A message may be lost
        (a dead peer, a full queue, a broken connection, a fault rule, a
        closed transport) and the core retries what matters; a loss is at
        most logged, never reported to the caller, except that a failed
        ``InstallSnapshot`` calls ``on_snapshot_failed(to_id)``.

        Order: messages to one peer that share a connection arrive in send
        order. A transport may carry the replication batches (AppendEntries
        with entries) on a connection of their own, so that heartbeats do
        not queue behind megabytes: they may then overtake the batches.
        ``InstallSnapshot`` streams its data from ``snapshot_source`` on a
        connection of its own, one stream per peer at a time.

        ``address`` is the latest the core knows for ``to_id``; a transport
        that holds a connection to an older address for it redials."""

    def learn_configuration(self, configuration: Configuration) -> None:
        """A configuration the node adopted: the recovered one right after
        ``start``, then each one the core adopts. A transport may use it to
        name peers (hashicorp's wire names senders by address) or to refuse
        snapshot streams from strangers; it must not send anything."""

    async def disconnect(self, peer_id: str) -> None:
        """Forget ``peer_id`` (it left the configuration): close its
        outbound connections, drop what is queued for it and abandon a
        snapshot stream to it. A later ``send`` to it starts afresh.
        Never raises; the runtime runs it as a task of its own."""

    async def close(self) -> None:
        """Stop listening, close every connection, abandon snapshot streams
        (their sinks cancelled) and stop every task. Idempotent. Once it
        returns the handler is not called again and ``send`` drops
        silently."""
