"""raftkv's own Raft protocol (``RAFT_PROTOCOL=raftkv``, the default).

:mod:`.handshake` (admission: the Hello and the cluster key challenge, with
the HMAC of :mod:`.auth`), :mod:`.inbound` (accepted connections: the read
loop, its deadlines), :mod:`.snapshots` (snapshot streams, both ends) and
:mod:`.tcp` (:class:`~.tcp.TcpTransport`, which wires them with the shared
frames, stream layer and outbound channels of :mod:`raftkv.transport`).
"""
