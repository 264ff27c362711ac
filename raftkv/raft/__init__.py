"""The Raft protocol as a synchronous, IO-free state machine.

Theory of operation: :class:`raftkv.raft.node.RaftNode` consumes one event at a
time (``step(event)``) and returns the effects the caller must carry out, in
order. Nothing in this package touches a socket, a file, a clock or a thread;
time arrives as ``Tick(now)`` in milliseconds and randomness comes from a
``random.Random`` the caller owns. The asyncio server, the simulator and the
tests all drive the same code.

The caller's contract (the "Ready" rule): within the effects of one step, or of
a batch of steps handled together, every ``PersistHardState`` / ``AppendToLog``
/ ``TruncateLog`` / ``CompactLog`` / ``RestoreSnapshot`` must be durable before
any ``Send`` leaves and before any ``Apply`` or ``ReadReady`` is acted on.
One relaxation is allowed (Raft thesis §10.2.1): when a leader's only
persistence effects are ``AppendToLog``/``CompactLog``, its ``AppendEntries``
may leave while the append is being written, provided no further event is
stepped until it is durable (the leader counts its own copy towards commitment
in those later steps).
"""
