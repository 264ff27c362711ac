"""The simulated network: one node's side of it, as the executor sees it.

Theory of operation: :class:`SimNetwork` is the executor's ``Network`` for a
simulated node. A send becomes a ``deliver`` event on the cluster's heap after
a random delay, unless the link is cut (``cluster.blocked``), the message is
dropped (``drop_rate``), or it is also duplicated (``dup_rate``); every draw
comes from the cluster's seeded random generator, so a seed fixes the run.
With ``cluster.fifo_links`` a link delivers in the order it was given messages,
as one TCP connection does (the learning simulator); otherwise later messages
may overtake earlier ones. Every message gets an id in the order it was sent, so one message in flight
can be named and dropped (``cluster.drop_message``), and an observer
(``cluster.on_message``) hears of each message's fate.
An ``InstallSnapshot`` carries the state of the sender's stored snapshot (a
live node streams the snapshot file); one that cannot leave is reported back
to the sender as ``SnapshotSendFailed``, as the live transport does.
"""

from __future__ import annotations

from raftkv.raft.messages import InstallSnapshot, Message

__all__ = ["SimNetwork"]


class SimNetwork:
    def __init__(self, cluster, node) -> None:
        self.cluster = cluster
        self.node = node

    def send(self, to: str, address: str, message: Message) -> None:
        cluster, node = self.cluster, self.node
        if cluster.observer is not None:
            cluster.observer.check_send(cluster, node, to, message)
        if isinstance(message, InstallSnapshot):
            message = InstallSnapshot(message.term, message.leader_id, message.leader_address, message.meta,
                                      dict(node.durable.snapshot_state))
        if to not in cluster.nodes or (node.id, to) in cluster.blocked:
            cluster.message_fate(cluster.new_message_id(), node.id, to, message, None, "cut")
            if isinstance(message, InstallSnapshot):
                cluster.schedule(cluster.now + 1, "call",
                                 lambda n=node.id, d=to: cluster.snapshot_send_failed(n, d))
            return
        rng = cluster.rng
        if cluster.drop_rate and rng.random() < cluster.drop_rate:
            cluster.message_fate(cluster.new_message_id(), node.id, to, message, None, "dropped")
            return
        copies = 2 if cluster.dup_rate and rng.random() < cluster.dup_rate else 1
        for _ in range(copies):
            delay = cluster.min_delay + rng.randrange(cluster.max_delay - cluster.min_delay + 1)
            arrives = cluster.now + delay
            if cluster.fifo_links:
                # as over one TCP connection: never before what was sent earlier on this link
                arrives = max(arrives, cluster.link_clock.get((node.id, to), 0))
                cluster.link_clock[(node.id, to)] = arrives
            message_id = cluster.new_message_id()
            cluster.message_fate(message_id, node.id, to, message, arrives, "sent")
            cluster.schedule(arrives, "deliver", (node.id, to, message, message_id))
