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

What the rest of raftkv uses: ``RaftNode(id, address, RaftConfig, PersistentState,
rng, now)``, then ``start()``, ``step(event, now)`` and ``next_deadline()``;
``status()`` for a frozen :class:`~.status.NodeStatus` (with a
:class:`~.status.PeerStatus` per follower on a leader) and ``entries(lo, hi)`` /
``term_at(index)`` to read the log. A refused request comes back as
``Rejected`` with a :class:`~.errors.RejectReason`.

Module layout
-------------
The interface:

* :mod:`.events` -- inputs to ``step``.
* :mod:`.effects` -- outputs of ``step``.
* :mod:`.errors` -- ``RejectReason``, why a request was refused.
* :mod:`.status` -- ``NodeStatus`` / ``PeerStatus``, read-only views of a node.
* :mod:`.config` -- ``RaftConfig``, timing and sizing.

The node, split by concern as hashicorp/raft splits raft.go:

* :mod:`.node` -- ``RaftNode``: its state, role changes (follower, candidate,
  leader), the dispatch of events and messages, commitment and applying;
  ``PersistentState``, what it recovers from disk.
* :mod:`.election` -- election timeouts, pre-vote and vote rounds, granting
  votes, TimeoutNow.
* :mod:`.following` -- the follower side of replication: AppendEntries and
  InstallSnapshot from the leader.
* :mod:`.replication` -- the leader side: heartbeats, check-quorum, feeding
  each peer, commitment by quorum.
* :mod:`.client_requests` -- proposals, linearizable reads, membership
  changes, leadership transfer, bootstrap.
* :mod:`.snapshots` -- taking local snapshots, compaction, user restores.

These are mixed into ``RaftNode``; they emit effects. What they use holds no
effects of its own:

* :mod:`.roles` -- ``LeaderState`` and ``CandidateState``, which exist only
  while the node is in that role.
* :mod:`.membership` -- the latest and the committed configuration, and what
  one change leads to.
* :mod:`.snapshot_policy` -- when to snapshot and how far to compact.
* :mod:`.progress` -- the leader's per-peer flow control (probe, pipeline,
  snapshot).
* :mod:`.read_only` -- the ReadIndex queue.
* :mod:`.quorum` -- majority arithmetic.
* :mod:`.log` -- the in-memory log over a compaction base.
* :mod:`.configuration` -- servers, suffrage, configuration changes.
* :mod:`.messages` -- the RPCs and log entries.
"""
