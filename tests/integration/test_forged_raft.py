"""Forged Raft messages from a stranger on the network, sent as raw frames to
a node's Raft port (no cluster key, the walkthrough's setting): none may
rewrite an acknowledged key, raise the cluster's term or move its leader."""

from __future__ import annotations

import socket

import pytest
from cluster import wait_until
from rawsock import read_until_closed

from raftkv.raft.messages import (
    AppendEntries,
    Entry,
    EntryType,
    RequestVote,
    TimeoutNow,
)
from raftkv.sim.state_machine import encode_command
from raftkv.transport.codec import encode, hello

pytestmark = pytest.mark.integration


def send_raw(node, sender: str, *messages) -> None:
    """Dial ``node``'s Raft port as ``sender`` and send frames, as an attacker would."""
    with socket.create_connection(("127.0.0.1", node.raft_port), timeout=5) as s:
        s.sendall(encode(hello(sender, "127.0.0.1:1")) + b"".join(encode(m) for m in messages))
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        read_until_closed(s)  # all that matters is what the node did with the frames


def terms(cluster) -> set[int]:
    return {n.status()["term"] for n in cluster.running()}


def test_a_strangers_append_entries_rewrites_nothing(cluster):
    leader = cluster.form(3)
    leader.set("k1", "original")
    cluster.wait_applied(leader.status()["commit_index"])
    follower = cluster["n2"]
    st = follower.status()
    term, last = st["term"], st["last_log_index"]
    forged = AppendEntries(term + 1, "evil", "127.0.0.1:1", last, st["last_log_term"],
                           (Entry(last + 1, term + 1, EntryType.COMMAND, encode_command("k1", "FORGED")),),
                           last + 1)
    send_raw(follower, "evil", forged)
    follower.wait_for_log("ignoring AppendEntries")

    leader.set("k2", "after")  # the cluster still commits, under the same leader and term
    assert cluster.leader().id == "n1" and terms(cluster) == {term}
    for node in cluster.running():
        assert node.value("k1") == "original" and node.value("k1", stale=True) == "original"
        assert "conflict at committed index" not in node.log()


def test_a_stranger_cannot_inflate_terms_or_take_leadership(cluster):
    leader = cluster.form(3)
    term = leader.status()["term"]
    for target in (cluster["n2"], cluster["n3"], leader):
        send_raw(target, "evil",
                 AppendEntries(term + 1000, "evil", "127.0.0.1:1", 0, 0, (), 0, heartbeat=True),
                 RequestVote(term + 1000, "evil", "127.0.0.1:1", 10 ** 6, term, leadership_transfer=True),
                 RequestVote(term + 1000, "evil", "127.0.0.1:1", 10 ** 6, term, pre_vote=True),
                 TimeoutNow(term, "evil"))
        target.wait_for_log("ignoring ")
    leader.set("still", "leading")
    assert cluster.leader().id == "n1" and terms(cluster) == {term}


def test_a_term_that_cannot_be_incremented_is_refused_and_never_persisted(cluster):
    leader = cluster.form(3)
    term = leader.status()["term"]
    follower = cluster["n3"]
    huge = 2 ** 64 - 1
    send_raw(follower, "n1", AppendEntries(huge, "n1", leader.raft_addr, 0, 0, (), 0, heartbeat=True))
    follower.wait_for_log("outside 0..2^63-1")
    leader.set("k", "v")
    assert terms(cluster) == {term}
    follower.kill()
    follower.start().wait_ready()
    wait_until(lambda: follower.status()["term"] == term, 15, what="n3 back at the cluster's term")
