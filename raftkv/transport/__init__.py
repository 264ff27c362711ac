"""How Raft messages travel between nodes.

Theory of operation: the core emits ``Send(to, address, message)`` effects and
the runtime hands each to a transport's ``send(to_id, address, message)``,
which must never block and may lose messages (Raft retries). Incoming messages
reach ``handler(from_id, message)`` on the event loop. That contract is
:class:`.contract.Transport`; three implementations keep it:
:mod:`.raftkv_protocol.tcp` (raftkv's own frames over asyncio streams),
:mod:`.hashicorp_protocol.transport` (hashicorp/raft's wire) and :mod:`.memory`
(in-process, with fault injection, for tests). The two TCP transports take
their settings as one :class:`.options.TransportOptions`.

As in hashicorp/raft, the layers are modules of their own. Here, shared by
both TCP transports:

* the contract and the settings: :mod:`.contract`, :mod:`.options`;
* the stream layer (dial, listen, TLS): :mod:`.stream`;
* raftkv's frames (:mod:`.codec`), the outbound channels per peer
  (:mod:`.channel`), Go's error texts (:mod:`.gotext`) and fault injection
  (:mod:`.faults`).

Then one subpackage per protocol:

* raftkv's, :mod:`.raftkv_protocol`: ``handshake`` (Hello, cluster key, with
  ``auth``), ``inbound`` (accepted connections), ``snapshots`` (snapshot
  streams), ``tcp`` (the transport that wires them);
* hashicorp's, :mod:`.hashicorp_protocol`: ``codec`` (frames), ``pipeline``
  (outbound), ``inbound`` (accepted connections), ``transport`` (the
  transport).
"""

from .codec import CodecError, FrameDecoder, decode_body, encode, read_frame
from .contract import Transport
from .memory import MemoryNetwork, MemoryTransport
from .raftkv_protocol.tcp import TcpTransport

__all__ = [
    "CodecError", "FrameDecoder", "decode_body", "encode", "read_frame",
    "MemoryNetwork", "MemoryTransport", "TcpTransport", "Transport",
]
