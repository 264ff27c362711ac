"""The leader's view of each follower: how far it matches and how to feed it.

Theory of operation (after etcd-io/raft's tracker/progress.go):

* PROBE: we do not know where the follower's log matches ours. Send one
  AppendEntries at ``next_index`` and wait for its answer (``probe_sent``);
  a rejection moves ``next_index`` back, a success moves to PIPELINE.
* PIPELINE: the follower matched; send batches optimistically, advancing
  ``next_index`` as they leave, with at most ``max_inflight`` unacknowledged
  (hashicorp's MaxRPCsInFlight). Any rejection drops back to PROBE.
* SNAPSHOT: the entries the follower needs were compacted away; an
  InstallSnapshot is in flight and nothing else is sent until it is answered.

Invariant: match_index < next_index.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    PIPELINE = "pipeline"
    SNAPSHOT = "snapshot"


@dataclass
class Progress:
    next_index: int
    match_index: int = 0
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)  # last index of each unacked batch
    last_contact: int = 0        # ms, last response of any kind
    acked_read_seq: int = 0      # highest heartbeat round this peer confirmed
    sent_commit: int = 0         # highest commit index we told it
    last_send: int = 0           # ms, last AppendEntries of any kind
    oldest_unacked: int = 0      # ms, when the oldest batch in flight left
    snapshot_index: int = 0      # index of the snapshot in flight (SNAPSHOT state)
    snapshot_sent_at: int = 0
    volume: str = ""             # the volume identity the peer last answered from
    retired_volumes: set[str] = field(default_factory=set)  # volumes it answered from before
    behind_since: int = -1       # ms, since when heartbeat answers say its log ends below match_index

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.next_index = max(self.next_index, self.match_index + 1)

    def become_pipeline(self) -> None:
        self.state = ProgressState.PIPELINE
        self.probe_sent = False
        self.inflight.clear()
        self.next_index = self.match_index + 1

    def become_snapshot(self, snapshot_index: int, now: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.inflight.clear()
        self.snapshot_index = snapshot_index
        self.snapshot_sent_at = now

    def can_send(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return not self.probe_sent
        if self.state is ProgressState.PIPELINE:
            return len(self.inflight) < max_inflight
        return False

    def sent(self, last_index: int, now: int) -> None:
        self.last_send = now
        if self.state is ProgressState.PIPELINE:
            if not self.inflight:
                self.oldest_unacked = now
            self.inflight.append(last_index)
            self.next_index = last_index + 1
        else:
            self.probe_sent = True

    def answers_current_request(self, rejected: int) -> bool:
        """Whether a rejection of the entries after ``rejected`` (the
        request's previous index) answers what we are sending now. An
        answer to a request older than the match point, or, while probing,
        to anything but the probe in flight, is stale and changes nothing."""
        if rejected < self.match_index:
            return False
        return self.state is not ProgressState.PROBE or rejected == self.next_index - 1

    def back_off(self, next_index: int) -> None:
        """The follower refused: probe again from ``next_index``, which the
        rule (rules.follower_progress) chose, never at or below what it
        already matched."""
        self.next_index = next_index
        self.become_probe()

    def acknowledge(self, match_index: int, next_index: int, now: int) -> bool:
        """Record a successful append, the indexes as the rule
        (rules.follower_progress) moved them; True if the match index moved."""
        if self.inflight and self.inflight[0] <= match_index:
            self.oldest_unacked = now
        while self.inflight and self.inflight[0] <= match_index:
            self.inflight.popleft()
        moved = match_index > self.match_index
        self.match_index = match_index
        # match_index < next_index, whatever the rule said
        self.next_index = max(next_index, match_index + 1)
        return moved
