"""hashicorp/raft 1.1.2's net_transport protocol (``RAFT_PROTOCOL=hashicorp``).

:mod:`.codec` (the frames), :mod:`.pipeline` (outbound: requests pipelined per
peer, answers matched in order), :mod:`.inbound` (accepted connections: one
request at a time, the core's answers) and :mod:`.transport`
(:class:`~.transport.HashicorpTransport`, which wires them over the shared
stream layer, channels and Go error texts of :mod:`raftkv.transport`).
"""
