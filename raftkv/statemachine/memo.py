"""What reads of the state machine remember: :class:`ViewMemo`."""

from __future__ import annotations

import sqlite3

__all__ = ["MEMO_KEYS", "MEMO_VALUE_CHARS", "ViewMemo"]

# At most this many keys, of values up to this many characters (at most ~4 MB).
MEMO_KEYS = 4096
MEMO_VALUE_CHARS = 1024
_UNSEEN = object()


class ViewMemo(dict):
    """Values reads have looked up, by key, kept while they are still what
    SQLite would return. In a :class:`~raftkv.statemachine.kvstore.KVReader`,
    one read view (one read transaction, unchanged until renewed; renewing
    starts a fresh memo). In the :class:`~raftkv.statemachine.kvstore.KVStore`,
    the committed state: each commit forgets the keys its applies touched, a
    restore, adopt or reset forgets everything, and reads inside the applies'
    transaction do not use it. It spares a read served under a lease or
    without a check its only remaining lookup, which costs more in Python's
    sqlite3 module (statement cache, bind, step, row tuple) than the rest of
    deciding the read. Bounded: big values, and keys past :data:`MEMO_KEYS`,
    are not kept."""

    __slots__ = ()

    def value(self, db: sqlite3.Connection, key: str) -> str | None:
        """``key``'s value, looked up in ``db`` (the view's connection) unless remembered."""
        value = self.get(key, _UNSEEN)
        if value is _UNSEEN:
            row = db.execute("SELECT v FROM kv WHERE k=?", (key,)).fetchone()
            value = None if row is None else row[0]
            if len(self) < MEMO_KEYS and (value is None or len(value) <= MEMO_VALUE_CHARS):
                self[key] = value
        return value

    def forget(self, keys: set[str]) -> None:
        if len(keys) > len(self):
            keys = keys & self.keys()
        for key in keys:
            self.pop(key, None)
