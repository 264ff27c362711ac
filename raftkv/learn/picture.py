"""What the learning page draws, as plain JSON: messages, events, node states and logs.

Theory of operation: the page at ``/ui/learn`` draws one picture from two
sources, the simulator (:mod:`raftkv.learn.world`) and the live cluster
(:mod:`raftkv.learn.live`). Both describe a step of a Raft core with the same
functions here, so the page needs one drawing for both:

- :func:`message_view` turns a message into ``{"type": ..., fields...,
  "label": ...}``; ``type`` is the message's class name (``AppendEntries``,
  ``RequestVoteResponse``, ...), as the page's ``[data-message]`` hooks name
  them; a heartbeat is an ``AppendEntries`` with ``"heartbeat": true``;
- :func:`event_view` does the same for what a core stepped on;
- :class:`LogShape` keeps a log as runs of one term (``[[first, last, term],
  ...]``) and the indexes of its no-op and configuration entries, so a log
  of thousands of entries costs a few numbers; it follows a live node's log
  effect by effect (:meth:`LogShape.apply`) or is read off a simulated core
  (:meth:`LogShape.of`);
- :func:`node_view` is one server as the page draws it: role, term, vote,
  suffrage, election timer, commit, applied, snapshot and log.

Nothing here does IO; every function takes what it describes and returns
new plain data (dicts, lists, str, int, bool, None).
"""

from __future__ import annotations

from raftkv.raft import effects as fx
from raftkv.raft import events as ev
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.raft.roles import LEADER
from raftkv.raft.status import NodeStatus

__all__ = ["ENTRIES_SHOWN", "LogShape", "event_view", "message_view", "node_view", "step_label", "suffrage_of"]

ENTRIES_SHOWN = 16  # entries of one AppendEntries listed on its arrow; the rest are counted

_KIND = {EntryType.COMMAND: "command", EntryType.NOOP: "noop", EntryType.CONFIGURATION: "config"}


def _entries(entries: tuple[Entry, ...]) -> list[list]:
    return [[e.index, e.term, _KIND[e.type]] for e in entries[:ENTRIES_SHOWN]]


def message_view(msg) -> dict:
    """A message as the page labels its arrow."""
    t = type(msg)
    if t is AppendEntries:
        view = {"type": "AppendEntries", "term": msg.term, "prev": [msg.prev_log_index, msg.prev_log_term],
                "entries": _entries(msg.entries), "count": len(msg.entries), "commit": msg.leader_commit,
                "heartbeat": msg.heartbeat, "read_seq": msg.read_seq}
        if msg.heartbeat:
            label = f"heartbeat t{msg.term} commit {msg.leader_commit}"
            if msg.read_seq:
                label += f" (read round {msg.read_seq})"
        elif msg.entries:
            span = (f"{msg.entries[0].index}" if len(msg.entries) == 1
                    else f"{msg.entries[0].index}..{msg.entries[-1].index}")
            label = f"append {span} after {msg.prev_log_index}@t{msg.prev_log_term}"
        else:
            label = f"probe after {msg.prev_log_index}@t{msg.prev_log_term}"
    elif t is AppendEntriesResponse:
        view = {"type": "AppendEntriesResponse", "term": msg.term, "success": msg.success,
                "last_index": msg.last_log_index, "prev_index": msg.prev_log_index, "match": msg.match_index,
                "heartbeat": msg.heartbeat, "read_seq": msg.read_seq}
        if msg.heartbeat:
            label = "heartbeat ok" + (f" (read round {msg.read_seq})" if msg.read_seq else "")
        elif msg.success:
            label = f"ok, match {msg.match_index}"
        else:
            label = f"rejected, my last is {msg.last_log_index}"
    elif t is RequestVote:
        view = {"type": "RequestVote", "term": msg.term, "pre_vote": msg.pre_vote,
                "last": [msg.last_log_index, msg.last_log_term], "transfer": msg.leadership_transfer}
        kind = "pre-vote" if msg.pre_vote else "vote"
        label = f"{kind} for t{msg.term}? last {msg.last_log_index}@t{msg.last_log_term}"
    elif t is RequestVoteResponse:
        view = {"type": "RequestVoteResponse", "term": msg.term, "granted": msg.granted, "pre_vote": msg.pre_vote}
        label = f"{'pre-vote' if msg.pre_vote else 'vote'} {'granted' if msg.granted else 'refused'}"
    elif t is InstallSnapshot:
        view = {"type": "InstallSnapshot", "term": msg.term, "snapshot": [msg.meta.index, msg.meta.term]}
        label = f"snapshot through {msg.meta.index}@t{msg.meta.term}"
    elif t is InstallSnapshotResponse:
        view = {"type": "InstallSnapshotResponse", "term": msg.term, "success": msg.success,
                "last_index": msg.last_index}
        label = f"snapshot {'installed' if msg.success else 'refused'}"
    elif t is TimeoutNow:
        view = {"type": "TimeoutNow", "term": msg.term}
        label = "TimeoutNow: campaign now"
    else:
        view = {"type": t.__name__}
        label = t.__name__
    view["label"] = label
    return view


def event_view(event) -> dict:
    """What a core was stepped on; ``None`` is its start."""
    t = type(event)
    if event is None:
        return {"type": "Start"}
    if t is ev.Receive:
        return {"type": "Receive", "from": event.from_id, "message": message_view(event.message)}
    if t is ev.Tick:
        return {"type": "Tick"}
    if t is ev.Propose:
        return {"type": "Propose", "request": event.request_id}
    if t is ev.ProposeBatch:
        return {"type": "ProposeBatch", "count": len(event.proposals)}
    if t is ev.ReadIndex:
        return {"type": "ReadIndex", "request": event.request_id, "lease": event.lease}
    if t is ev.ChangeMembership:
        return {"type": "ChangeMembership", "command": str(event.command), "server": event.server_id}
    if t is ev.TransferLeadership:
        return {"type": "TransferLeadership", "target": event.target_id}
    if t is ev.Bootstrap:
        return {"type": "Bootstrap", "voters": [s.id for s in event.configuration.servers]}
    if t is ev.SnapshotTaken:
        return {"type": "SnapshotTaken", "index": event.meta.index}
    if t is ev.SnapshotSendFailed:
        return {"type": "SnapshotSendFailed", "peer": event.peer_id}
    return {"type": t.__name__}


def step_label(node_id: str, event: dict) -> str:
    """A frame's one-line label, from an :func:`event_view` (both sources label frames so)."""
    kind = event["type"]
    if kind == "Receive":
        return f"{node_id} receives {event['message']['type']} from {event['from']}"
    if kind == "Tick":
        return f"{node_id}'s timer"
    if kind == "Start":
        return f"{node_id} starts"
    if kind == "Fsync":
        return f"{node_id} fsyncs its log"
    return f"{node_id}: {kind}"


class LogShape:
    """A log as runs of entries of one term, plus where the no-ops and
    configuration entries sit."""

    __slots__ = ("base_index", "base_term", "runs", "kinds", "_snapshot")

    def __init__(self, base_index: int = 0, base_term: int = 0) -> None:
        self.base_index = base_index
        self.base_term = base_term
        self.runs: list[list[int]] = []       # [first, last, term], contiguous, in order
        self.kinds: dict[int, str] = {}        # index -> "noop" | "config"
        self._snapshot: tuple[int, int] | None = None  # the last RestoreSnapshot's index and term

    @classmethod
    def of(cls, log) -> "LogShape":
        """Read off a core's :class:`~raftkv.raft.log.RaftLog`."""
        shape = cls(log.base_index, log.base_term)
        shape.append(log.slice(log.first_index, log.last_index))
        return shape

    @property
    def last_index(self) -> int:
        return self.runs[-1][1] if self.runs else self.base_index

    def term_at(self, index: int) -> int | None:
        if index == self.base_index:
            return self.base_term
        for first, last, term in self.runs:
            if first <= index <= last:
                return term
        return None

    def append(self, entries) -> None:
        for e in entries:
            if e.index <= self.last_index:   # an overlap: the new entry replaces what was there
                self.truncate_from(e.index)
            elif e.index > self.last_index + 1:   # a gap this shape did not see coming: start over
                self.reset(e.index - 1, 0)
            if self.runs and self.runs[-1][2] == e.term:
                self.runs[-1][1] = e.index
            else:
                self.runs.append([e.index, e.index, e.term])
            if e.type is not EntryType.COMMAND:
                self.kinds[e.index] = _KIND[e.type]

    def truncate_from(self, index: int) -> None:
        """Drop entries ``index`` and after."""
        while self.runs and self.runs[-1][0] >= index:
            self.runs.pop()
        if self.runs and self.runs[-1][1] >= index:
            self.runs[-1][1] = index - 1
        self.kinds = {i: k for i, k in self.kinds.items() if i < index}

    def compact_through(self, index: int) -> None:
        """Drop entries up to ``index``, which becomes the base."""
        term = self.term_at(index)
        if term is None:  # the whole log went: a snapshot from the leader replaced it
            term = self._snapshot[1] if self._snapshot and self._snapshot[0] == index else 0
            self.reset(index, term)
            return
        while self.runs and self.runs[0][1] <= index:
            self.runs.pop(0)
        if self.runs and self.runs[0][0] <= index:
            self.runs[0][0] = index + 1
        self.base_index, self.base_term = index, term
        self.kinds = {i: k for i, k in self.kinds.items() if i > index}

    def reset(self, index: int, term: int) -> None:
        self.base_index, self.base_term = index, term
        self.runs, self.kinds = [], {}

    def apply(self, effects) -> bool:
        """Follow a step's log effects; True if the log changed."""
        changed = False
        for effect in effects:
            t = type(effect)
            if t is fx.AppendToLog:
                self.append(effect.entries)
            elif t is fx.TruncateLog:
                self.truncate_from(effect.from_index)
            elif t is fx.CompactLog:
                self.compact_through(effect.through_index)
            elif t is fx.RestoreSnapshot:
                self._snapshot = (effect.meta.index, effect.meta.term)
            else:
                continue
            changed = True
        return changed

    def view(self) -> dict:
        return {"base": [self.base_index, self.base_term], "runs": [list(r) for r in self.runs],
                "kinds": sorted([i, k] for i, k in self.kinds.items())}


def suffrage_of(configuration, node_id: str) -> str:
    if configuration.is_voter(node_id):
        return "voter"
    return "nonvoter" if configuration.has(node_id) else "none"


def node_view(status: NodeStatus, log: dict, *, applied: int | None = None, durable: int | None = None,
              timer_start: int | None = None) -> dict:
    """One server as the page draws it. ``log`` is a :meth:`LogShape.view`;
    ``durable`` the last index on disk when it differs from the log's last
    (entries the leader sent before its own write finished); ``timer_start``
    when the election timer was last reset, in the same clock as the status."""
    follower = status.role != LEADER
    return {
        "id": status.id, "up": True, "role": status.role, "pre_vote": status.pre_vote, "term": status.term,
        "vote": status.voted_for,
        "leader": status.leader_id, "suffrage": suffrage_of(status.configuration, status.id),
        "commit": status.commit_index, "applied": status.last_applied if applied is None else applied,
        "last": status.last_log_index, "durable": status.last_log_index if durable is None else durable,
        "snapshot": [status.last_snapshot_index, status.last_snapshot_term],
        "timer": ([timer_start if timer_start is not None else status.now, status.election_deadline]
                  if follower and status.election_deadline else None),
        "members": [[s.id, "voter" if s.is_voter else "nonvoter"] for s in status.configuration.servers],
        "guard": status.amnesia_guard,
        "log": log,
    }


def down_view(node_id: str, disk: dict | None = None) -> dict:
    """A server that is down; ``disk``, when known (the simulator knows it),
    is what its disk holds: ``{"term", "vote", "last", "snapshot": [index,
    term], "log": LogShape view}``, what it will come back with."""
    view = {"id": node_id, "up": False, "role": "Down"}
    if disk is not None:
        view["disk"] = disk
    return view
