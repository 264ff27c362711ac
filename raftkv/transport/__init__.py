"""How Raft messages travel between nodes.

Theory of operation: the core emits ``Send(to, address, message)`` effects and
the runtime hands each to a transport's ``send(to_id, address, message)``,
which must never block and may lose messages (Raft retries). Incoming
messages reach ``handler(from_id, message)`` on the event loop. That
contract is :class:`.contract.Transport`; three implementations keep it:
:mod:`.tcp` (length-prefixed msgpack frames from :mod:`.codec` over asyncio
streams), :mod:`.hashicorp` (hashicorp/raft's wire) and :mod:`.memory`
(in-process, with fault injection, for tests).
"""

from .codec import CodecError, FrameDecoder, decode_body, encode, read_frame
from .contract import Transport
from .memory import MemoryNetwork, MemoryTransport
from .tcp import TcpTransport

__all__ = [
    "CodecError", "FrameDecoder", "decode_body", "encode", "read_frame",
    "MemoryNetwork", "MemoryTransport", "TcpTransport", "Transport",
]
