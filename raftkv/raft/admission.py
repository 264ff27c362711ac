"""Which received messages the core acts on: a part of :class:`~raftkv.raft.node.RaftNode`.

Theory of operation: Raft trusts its peers; the network need not be made of
them. Before a message can move a term, cast a vote or name a leader, it
must pass three checks (rule 8 of the node):

* **from a member.** Its sender is in this node's latest configuration. Two
  exceptions keep a node that knows too little from being stuck: a node
  with no configuration yet (a new server waiting for its leader's first
  AppendEntries; it votes for no one, rule 7), and a node that has heard
  from no leader for an election timeout (its configuration may predate the
  leader's election), take a leader's AppendEntries and InstallSnapshot
  from a server they do not know. Vote requests from strangers are answered
  no by the election's own checks.
* **in its own name.** A RequestVote names its sender as the candidate, an
  AppendEntries, InstallSnapshot or TimeoutNow names its sender as leader:
  a server speaks only for itself.
* **sane.** Terms and indexes are below 2^63 (beyond that nothing honest
  ever gets, and a term near 2^64 could no longer be incremented or
  encoded); entries continue the previous index one by one with terms no
  newer than the message's; an acknowledgement never claims entries the
  leader does not have; a TimeoutNow comes from this term's leader.

Who the sender is comes from the transport: the connection's hello,
authenticated by the cluster key or mutual TLS when they are set. Without
them a message can claim to be any member, and these checks only keep out
what is malformed or names a stranger (docs/security.md).
"""

from __future__ import annotations

from .effects import Bare
from .fields import NodeFields
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    TimeoutNow,
)

# Nothing honest reaches this: terms and indexes grow by one at a time.
MAX_SANE = 2 ** 63 - 1

# How long the core keeps quiet about one sender after it said why it ignored it.
_WARN_EVERY_MS = 5000
_WARNED_SENDERS = 64


class Admission(NodeFields):
    """Mixed into RaftNode; reads its fields."""

    def _admit(self, from_id: str, msg) -> bool:
        """Rule 8: whether the core may act on ``msg`` from ``from_id``;
        says why not (at most every few seconds per sender)."""
        why = self._refusal(from_id, msg)
        if why is None:
            return True
        last = self._warned_at.get(from_id)
        if last is None or self.now - last >= _WARN_EVERY_MS:
            if len(self._warned_at) >= _WARNED_SENDERS:
                self._warned_at.clear()  # a flood of made-up names must not grow memory
            self._warned_at[from_id] = self.now
            self._log("WARN", f"ignoring {type(msg).__name__}: {why}", ("from", Bare(from_id)),
                      ("term", msg.term if type(msg.term) is int else None))
        return False

    def _refusal(self, from_id: str, msg) -> str | None:
        insane = _insane(msg)
        if insane is not None:
            return insane
        t = type(msg)
        claimed = msg.candidate_id if t is RequestVote else getattr(msg, "leader_id", from_id)
        if claimed != from_id:
            return f"it speaks for {claimed!r}, not for its sender"
        if from_id == self.id:
            return None
        if self.configuration.servers:
            if not self.configuration.has(from_id) and t is not RequestVote:
                # (a vote request is answered, by the election's own checks)
                if t not in (AppendEntries, InstallSnapshot):
                    return "the sender is not in the configuration"
                if self._has_live_leader() and from_id != self.leader_id:
                    return "the sender is not in the configuration, and we follow a leader that is"
                # Otherwise our configuration may be the stale one: a
                # follower cut off while servers joined and took over must be
                # able to follow the leader they elected, or it never learns.
        elif t not in (AppendEntries, InstallSnapshot, RequestVote):
            # (a vote request is answered: no, rule 7)
            return "this node has no configuration yet, and takes only a leader's messages"
        if t is TimeoutNow and (msg.term != self.current_term or from_id not in (self.leader_id, self.id)):
            # (a node's own TimeoutNow is how the simulator's scripts start an election now)
            return "only this term's leader hands leadership over"
        if t is AppendEntriesResponse and msg.success and msg.match_index > self.log.last_index:
            return f"it acknowledges index {msg.match_index}, beyond our last index {self.log.last_index}"
        if t is InstallSnapshotResponse and msg.success and msg.last_index > max(self.log.last_index,
                                                                                   self.snapshot.index):
            return f"it acknowledges index {msg.last_index}, beyond our last index {self.log.last_index}"
        return None


def _insane(msg) -> str | None:
    """Why a message cannot come from an honest server, or None."""
    numbers = [msg.term]
    t = type(msg)
    if t is AppendEntries:
        numbers += [msg.prev_log_index, msg.prev_log_term, msg.leader_commit, msg.read_seq]
        expected = msg.prev_log_index + 1
        for entry in msg.entries:
            if entry.index != expected:
                return f"its entries skip from index {expected - 1} to {entry.index}"
            if entry.term > msg.term or entry.term < 1:
                return f"its entry {entry.index} has term {entry.term}, outside 1..{msg.term}"
            expected += 1
    elif t is RequestVote:
        numbers += [msg.last_log_index, msg.last_log_term]
        if msg.last_log_term > msg.term:
            return f"its last log term {msg.last_log_term} is newer than its term {msg.term}"
    elif t is AppendEntriesResponse:
        numbers += [msg.last_log_index, msg.prev_log_index, msg.match_index, msg.read_seq]
    elif t is InstallSnapshot:
        numbers += [msg.meta.index, msg.meta.term]
        if msg.meta.term > msg.term:
            return f"its snapshot's term {msg.meta.term} is newer than its term {msg.term}"
    elif t is InstallSnapshotResponse:
        numbers.append(msg.last_index)
    elif t is ReadIndexRequest:
        numbers.append(msg.seq)
    elif t is ReadIndexResponse:
        numbers += [msg.seq, msg.index]
    for n in numbers:
        if type(n) is not int or n < 0 or n > MAX_SANE:
            return f"it carries {n!r}, outside 0..2^63-1"
    return None
