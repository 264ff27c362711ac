"""The in-memory Raft log over a compaction base.

Theory of operation: the log holds the entries after ``base_index`` (the last
index folded into a snapshot and dropped); ``base_term`` is that entry's term so
the consistency check still works at the boundary. Indexes are contiguous:
entry ``i`` lives at ``entries[i - base_index - 1]``. The log is a mirror of the
durable log store, which the runtime keeps in step through effects; restarting
rebuilds it from the store. Everything here is O(1) except truncation and
compaction, which are rare.
"""

from __future__ import annotations

from .messages import Entry


class RaftLog:
    __slots__ = ("base_index", "base_term", "_entries")

    def __init__(self, base_index: int = 0, base_term: int = 0, entries: list[Entry] | None = None) -> None:
        self.base_index = base_index
        self.base_term = base_term
        self._entries: list[Entry] = list(entries or ())
        for offset, entry in enumerate(self._entries):
            if entry.index != base_index + 1 + offset:
                raise ValueError(f"log entries not contiguous at {entry.index}")

    @property
    def first_index(self) -> int:
        return self.base_index + 1

    @property
    def last_index(self) -> int:
        return self.base_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.base_term

    def __len__(self) -> int:
        return len(self._entries)

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or absent."""
        if index == self.base_index:
            return self.base_term
        if index < self.base_index or index > self.last_index:
            return None
        return self._entries[index - self.base_index - 1].term

    def entry(self, index: int) -> Entry | None:
        if index <= self.base_index or index > self.last_index:
            return None
        return self._entries[index - self.base_index - 1]

    def slice(self, lo: int, hi: int, limit: int | None = None) -> list[Entry]:
        """Entries lo..hi inclusive (clamped to what the log holds)."""
        lo = max(lo, self.first_index)
        hi = min(hi, self.last_index)
        if limit is not None:
            hi = min(hi, lo + limit - 1)
        if lo > hi:
            return []
        start = lo - self.base_index - 1
        return self._entries[start:start + hi - lo + 1]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        if entries and entries[0].index != self.last_index + 1:
            raise ValueError(f"append at {entries[0].index} after last index {self.last_index}")
        self._entries.extend(entries)

    def truncate_from(self, index: int) -> None:
        """Drop entries with index >= ``index`` (never below the base)."""
        if index <= self.base_index:
            raise ValueError(f"cannot truncate at {index}: compacted through {self.base_index}")
        del self._entries[index - self.base_index - 1:]

    def compact_through(self, index: int) -> None:
        """Drop entries with index <= ``index``; they are covered by a snapshot."""
        if index <= self.base_index:
            return
        if index > self.last_index:
            raise ValueError(f"cannot compact through {index}: last index is {self.last_index}")
        self.base_term = self.term_at(index)  # type: ignore[assignment]
        del self._entries[:index - self.base_index]
        self.base_index = index

    def reset(self, base_index: int, base_term: int) -> None:
        """Discard every entry; the log restarts after (base_index, base_term)."""
        self._entries.clear()
        self.base_index = base_index
        self.base_term = base_term

    def last_config_entry(self, at_or_below: int | None = None) -> Entry | None:
        from .messages import EntryType
        hi = self.last_index if at_or_below is None else min(at_or_below, self.last_index)
        for i in range(hi, self.base_index, -1):
            e = self._entries[i - self.base_index - 1]
            if e.type is EntryType.CONFIGURATION:
                return e
        return None
