"""When to snapshot the state machine, and how much log to keep after.

Theory of operation (hashicorp's SnapshotInterval / SnapshotThreshold /
TrailingLogs, plus two limits of our own because the log lives in memory):

* Every SnapshotInterval, jittered by up to as much again, a snapshot is
  taken if at least SnapshotThreshold entries were applied since the last one.
* Between those checks one is taken at once when the entries applied since
  the last one asked for reach snapshot_log_limit, or their data
  snapshot_log_bytes, so the in-memory log stays bounded.
* After a snapshot the log is compacted through it, keeping TrailingLogs
  entries before it for slow followers, or fewer when those together with
  the entries after the snapshot hold more than snapshot_log_bytes of data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

from .config import RaftConfig
from .log import RaftLog
from .messages import Entry


class SnapshotDue(enum.Enum):
    INTERVAL = "interval"          # the periodic check found enough entries applied
    MEMORY_LIMIT = "memory-limit"  # the in-memory log reached its bound


class SnapshotPolicy:
    __slots__ = ("config", "_jitter", "next_check", "asked_at", "applied_bytes")

    def __init__(self, config: RaftConfig, jitter: Callable[[int], int], now: int) -> None:
        self.config = config
        self._jitter = jitter        # the node's randomizer: its draws interleave with election timers
        self.next_check = now + self._interval()
        self.asked_at = 0            # last_applied when a snapshot was last asked for
        self.applied_bytes = 0       # entry data applied since then

    def _interval(self) -> int:
        return self._jitter(self.config.snapshot_interval)

    def applied(self, entries: Iterable[Entry]) -> None:
        self.applied_bytes += sum(len(e.data) for e in entries)

    def asked(self, last_applied: int) -> None:
        self.asked_at = last_applied
        self.applied_bytes = 0

    def check(self, now: int, last_applied: int, snapshot_index: int) -> SnapshotDue | None:
        """Whether a tick at ``now`` should take a snapshot."""
        if now >= self.next_check:
            self.next_check = now + self._interval()
            if last_applied - snapshot_index >= self.config.snapshot_threshold:
                return SnapshotDue.INTERVAL
            return None
        if (last_applied - max(snapshot_index, self.asked_at) >= self.config.snapshot_log_limit
                or self.applied_bytes >= self.config.snapshot_log_bytes):
            return SnapshotDue.MEMORY_LIMIT
        return None

    def compaction_point(self, log: RaftLog, snapshot_index: int) -> int:
        """The index to compact the log through after a snapshot at ``snapshot_index``."""
        return max(min(snapshot_index, log.last_index - self.config.trailing_logs),
                   self._first_kept_by_bytes(log, snapshot_index) - 1)

    def _first_kept_by_bytes(self, log: RaftLog, snapshot_index: int) -> int:
        """The first index to keep after a snapshot at ``snapshot_index``:
        every entry after it, and before it as many (up to TrailingLogs) as
        fit, with those, in snapshot_log_bytes of entry data."""
        kept = sum(len(e.data) for e in log.slice(snapshot_index + 1, log.last_index))
        floor = max(log.base_index, log.last_index - self.config.trailing_logs)
        index = snapshot_index + 1
        while index - 1 > floor:
            entry = log.entry(index - 1)
            assert entry is not None  # floor >= base_index: the entry is in the log
            size = len(entry.data)
            if kept + size > self.config.snapshot_log_bytes:
                break
            kept += size
            index -= 1
        return index
