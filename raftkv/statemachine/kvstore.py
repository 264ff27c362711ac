"""The key-value state machine that Raft replicates.

Theory of operation
-------------------
``KVStore`` keeps the replicated dictionary of str -> str in a SQLite file
(as rqlite keeps its state machine in SQLite), not in Python objects: a
million 100-byte values cost ~250 MB as a ``dict`` but only SQLite's bounded
page cache in memory here, and a restarted node is serving at once instead
of first reloading every key from a snapshot. Only committed log entries
change it. Commands are msgpack arrays built by :mod:`.commands`:

    ["set", key, value]     -> None
    ["del", key]            -> bool (whether the key existed)
    ["setm", {key: value}]  -> int (number of keys written)

Invariants:

1. Determinism: the same entries in the same order give the same state on
   every node, so ``apply`` depends on nothing but its arguments and state.
2. A malformed command changes nothing. It is still a committed entry, so it
   still advances ``applied_index``, and ``apply`` *returns* (does not raise)
   a ``CommandError`` that the runtime hands back to the client. ``setm`` is
   validated whole before any key is written: all or nothing.
3. ``apply`` ignores indexes at or below ``applied_index``: those effects are
   already in the state (restored from a snapshot, or kept in the file from
   before a restart), and applying a ``del`` twice would report the wrong
   result.
4. ``applied_index`` and the key count live in the file next to the data and
   change in the same transaction. ``commit()`` ends the transaction the
   applies opened; the runtime calls it after each batch. The file is not
   fsync'd (``synchronous=OFF``): the Raft log is the durable record. A
   killed process loses nothing SQLite handed to the kernel, so after a
   crash the file is a consistent state at some applied index and the log
   replays the rest. After the *machine* restarts (a power cut may have
   torn the file) the file is not trusted: it records the kernel's boot id,
   and a different boot id means it is discarded and rebuilt from the
   latest snapshot and the log.
5. Snapshots are cheap for the writer: ``snapshot()`` commits, then opens a
   second connection and starts a read transaction, which SQLite's WAL
   keeps pinned at that state while ``apply`` goes on; the returned function
   streams it (on another thread). The stream is a msgpack header
   ``{format, version, applied_index, count}`` followed by maps of up to
   10,000 pairs (fewer when the values are large).
6. ``restore`` and ``adopt`` replace the whole state in one transaction on a
   connection of their own, so they may run on another thread while readers
   keep seeing the old state; a bad stream rolls back and leaves it as it
   was.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

import msgpack

from .commands import OP_DELETE, OP_SET, OP_SET_MANY, CommandError
from .memo import ViewMemo

LogFn = Callable[[str, str, list], None]

SNAPSHOT_FORMAT = "raftkv-kv"
SNAPSHOT_VERSION = 1
BATCH_PAIRS = 10_000
BATCH_BYTES = 4 * 1024 * 1024
# One msgpack object (a batch, or one huge value) must fit in the unpacker.
_MAX_OBJECT = 512 * 1024 * 1024
# SQLite's page cache per connection (a writer and a reader): what the state
# costs in memory.
CACHE_KIB = 8 * 1024
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    applied_index INTEGER NOT NULL,
    keys INTEGER NOT NULL,
    boot_id TEXT NOT NULL
);
"""


# Keys under this prefix belong to raftkv itself (the HTTP-address registry):
# clients may not write them, and a restored backup keeps the cluster's own.
class SnapshotFormatError(Exception):
    """A snapshot stream that is not a valid KVStore snapshot."""


class Readable(Protocol):
    """What a snapshot is restored from: a file, or anything that reads like one."""

    def read(self, n: int = -1, /) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> object: ...


def _noop_log(level: str, message: str, fields: list) -> None:
    return None


def _all_str(mapping: dict) -> bool:
    return all(type(k) is str and type(v) is str for k, v in mapping.items())


def boot_id() -> str:
    """The kernel's id for this boot; a fresh random one where there is none,
    so that a file from an unknown boot is never trusted."""
    try:
        with open(_BOOT_ID_PATH) as f:
            return f.read().strip()
    except OSError:
        return "unknown-" + uuid.uuid4().hex


def _connect(path: str) -> sqlite3.Connection:
    # Connections move between threads (a snapshot streams on another one,
    # the runtime closes the store on its disk thread) but are never used by
    # two at once.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return db


def _open_schema(path: str) -> sqlite3.Connection:
    db = _connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    return db


def _remove_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _prefix_range(prefix: str) -> tuple[str, str]:
    """[low, high) bounds of the keys that start with ``prefix``."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class KVStore:
    """The replicated dictionary. See the module docstring.

    ``path`` is the SQLite file; without one the store lives in a temporary
    file removed when the store is closed or collected (tests, scratch)."""

    @staticmethod
    def encode_command(data: bytes) -> bytes:
        """A command built by the HTTP side, as this store's log entries carry
        it: raftkv's own format, as it is."""
        return data

    def __init__(self, path: str | None = None, log: LogFn | None = None,
                 temporary: bool = False) -> None:
        self._log = log or _noop_log
        if path is None:
            fd, path = tempfile.mkstemp(prefix="raftkv-fsm-", suffix=".db")
            os.close(fd)
            os.unlink(path)
            temporary = True
        self.path = path
        self._cleanup = weakref.finalize(self, _remove_files, path) if temporary else None
        self._db = self._open()
        row = self._db.execute("SELECT applied_index, keys FROM meta").fetchone()
        self.applied_index: int = row[0]
        self._keys: int = row[1]
        self._committed_index = self.applied_index
        self._in_txn = False
        # Reads go through a connection of their own that keeps one read
        # transaction open until the state changes: starting a transaction
        # takes file-lock syscalls, which cost more than the lookup itself.
        self._reader = _connect(self.path)
        self._changes = itertools.count(1)  # next() is atomic: restore runs on another thread
        self._generation = 0                # changes with every committed change to the state
        self._reader_generation = -1
        # Values reads looked up (memo.py). A commit forgets the keys its
        # applies touched; replacing the whole state forgets them all.
        self._memo = ViewMemo()
        self._touched: set[str] = set()
        self._replacements = 0              # bumped (before _generation) by every replacement
        self._memo_replacements = 0
        self._changed_index = self.applied_index

    def _open(self) -> sqlite3.Connection:
        """Open the file, discarding it if it was written before the machine
        last restarted or cannot be read (see invariant 4)."""
        boot = boot_id()
        db = None
        try:
            db = _open_schema(self.path)
            row = db.execute("SELECT applied_index, boot_id FROM meta").fetchone()
        except sqlite3.DatabaseError as exc:
            self._log("WARN", "state machine file is unreadable, rebuilding it",
                      [("path", self.path), ("error", str(exc))])
            discard = True
        else:
            discard = row is not None and row[1] != boot
            if discard and row[0]:
                self._log("WARN", "state machine file predates a machine restart, rebuilding it "
                          "from the snapshot and log", [("path", self.path), ("applied-index", row[0])])
        if discard:
            if db is not None:
                db.close()
            _remove_files(self.path)
            db = _open_schema(self.path)
            row = None
        if row is None:
            db.execute("INSERT OR REPLACE INTO meta VALUES (0, 0, 0, ?)", (boot,))
        elif row[0]:
            self._log("INFO", "state machine file opened", [("path", self.path), ("applied-index", row[0])])
        db.execute("PRAGMA journal_size_limit=67108864")
        return db

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> str | None:
        if self._in_txn:  # uncommitted applies: only the writer sees them
            row = self._db.execute("SELECT v FROM kv WHERE k=?", (key,)).fetchone()
            return None if row is None else row[0]
        if self._reader_generation != self._generation:
            self._renew_read()
        return self._memo.value(self._reader, key)

    @property
    def changed_index(self) -> int:
        """The highest applied index at which the keys and values changed: a
        command that wrote or deleted a key (counted from the moment it is
        applied, before its commit), or a replaced state. Entries that
        change nothing (no-ops, configuration changes) leave it behind
        ``applied_index``: a reader whose view has reached it holds the
        data as of ``applied_index``. At most ``applied_index``, and never
        lower than before, except after ``reset`` (a node's start only)."""
        return self.applied_index if self._touched else self._changed_index

    def _renew_read(self) -> None:
        reader = self._reader
        if reader.in_transaction:
            reader.execute("ROLLBACK")
        self._reader_generation = self._generation
        if self._memo_replacements != self._replacements:
            self._memo_replacements = self._replacements
            self._memo = ViewMemo()
        reader.execute("BEGIN")

    def _end_read(self) -> None:
        """Let go of the read view, so that a checkpoint is not held back by it."""
        self._generation = next(self._changes)
        if self._reader.in_transaction:
            self._reader.execute("ROLLBACK")

    def __len__(self) -> int:
        return self._keys

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with ``prefix`` (raftkv's reserved keys are few)."""
        low, high = _prefix_range(prefix)
        db = self._db if self._in_txn else self._reader
        if not self._in_txn and self._reader_generation != self._generation:
            self._renew_read()
        return db.execute("SELECT count(*) FROM kv WHERE k >= ? AND k < ?", (low, high)).fetchone()[0]

    def __contains__(self, key: object) -> bool:
        return type(key) is str and self.get(key) is not None

    def items(self) -> Iterator[tuple[str, str]]:
        """Every pair, in key order (a listing for tests and tools)."""
        return iter(self._db.execute("SELECT k, v FROM kv ORDER BY k").fetchall())

    # ----------------------------------------------------------------- writes

    def apply(self, index: int, data: bytes) -> object:
        """Apply the command committed at ``index``; see the module docstring
        for return values. Malformed commands return a ``CommandError``."""
        if index <= self.applied_index:
            return None
        self.applied_index = index
        try:
            cmd = msgpack.unpackb(data, raw=False, use_list=True)
        except Exception as exc:  # msgpack raises many types on garbage
            return self._reject(index, CommandError("undecodable command: %s" % exc))
        if not isinstance(cmd, list) or not cmd:
            return self._reject(index, CommandError("command is not a non-empty array"))
        op = cmd[0]
        if op == OP_SET and len(cmd) == 3:
            key, value = cmd[1], cmd[2]
            if type(key) is not str or type(value) is not str:
                return self._reject(index, CommandError("set: key and value must be strings"))
            self._put(key, value)
            return None
        if op == OP_DELETE and len(cmd) == 2:
            key = cmd[1]
            if type(key) is not str:
                return self._reject(index, CommandError("del: key must be a string"))
            self._begin()
            self._touched.add(key)
            existed = self._db.execute("DELETE FROM kv WHERE k=?", (key,)).rowcount > 0
            self._keys -= existed
            return existed
        if op == OP_SET_MANY and len(cmd) == 2:
            mapping = cmd[1]
            if not isinstance(mapping, dict) or not _all_str(mapping):
                return self._reject(index, CommandError("setm: expected a map of strings"))
            for key, value in mapping.items():
                self._put(key, value)
            return len(mapping)
        return self._reject(index, CommandError("unknown command %r" % (op,)))

    def _put(self, key: str, value: str) -> None:
        self._begin()
        self._touched.add(key)
        db = self._db
        # Insert first: a new key, the common case, is one statement, and
        # whether it was new keeps the key count exact.
        if db.execute("INSERT OR IGNORE INTO kv VALUES (?, ?)", (key, value)).rowcount:
            self._keys += 1
        else:
            db.execute("UPDATE kv SET v=? WHERE k=?", (value, key))

    def _begin(self) -> None:
        if not self._in_txn:
            self._db.execute("BEGIN")
            self._in_txn = True

    def mark_applied(self, index: int) -> None:
        """Advance ``applied_index`` past an entry with no state effect
        (a leader's no-op or a configuration change)."""
        if index > self.applied_index:
            self.applied_index = index

    def commit(self) -> None:
        """End the transaction the applies since the last call opened, with
        ``applied_index`` and the key count in it."""
        if self.applied_index == self._committed_index and not self._in_txn:
            return
        self._begin()
        self._db.execute("UPDATE meta SET applied_index=?, keys=?", (self.applied_index, self._keys))
        self._db.execute("COMMIT")
        self._in_txn = False
        self._committed_index = self.applied_index
        if self._touched:
            self._changed_index = self.applied_index
            self._memo.forget(self._touched)
            self._touched.clear()
        self._end_read()

    def close(self) -> None:
        self.commit()
        self._reader.close()
        self._db.close()
        if self._cleanup is not None:
            self._cleanup()

    def abandon(self) -> None:
        """Close without committing, as a crash would. After a write of the
        file failed, SQLite may have undone the failing statement and kept the
        rest of the transaction; committing that (``close`` does) would record
        the batch as applied with a change missing. The file stays at the last
        commit and the log replays the batch at the next start."""
        self._in_txn = False
        self.applied_index = self._committed_index  # so a later close() commits nothing
        self._memo = ViewMemo()
        self._touched.clear()
        for db in (self._reader, self._db):
            with contextlib.suppress(sqlite3.Error):
                db.close()  # an open transaction is rolled back

    def _reject(self, index: int, error: CommandError) -> CommandError:
        self._log("WARN", "rejected malformed command", [("index", index), ("error", str(error))])
        return error

    # -------------------------------------------------------------- snapshots

    def snapshot(self) -> Callable[[_Writer], int]:
        """Capture the current state; the returned function streams it to
        ``writer.write`` and returns the number of bytes written. It may run
        on another thread, once."""
        self.commit()
        reader = _connect(self.path)
        reader.execute("BEGIN")
        applied_index = reader.execute("SELECT applied_index FROM meta").fetchone()[0]

        def persist(writer: _Writer) -> int:
            try:
                return _stream(reader, applied_index, writer)
            finally:
                reader.close()

        return persist

    def expect_restore(self, applied_index: int) -> None:
        """The index the next restored snapshot stands for. raftkv's format
        carries its own index; a format that does not (hraftd's) keeps it."""

    def restore(self, reader: Readable) -> None:
        """Replace the whole state with a snapshot streamed from ``reader``."""
        unpacker = msgpack.Unpacker(reader, raw=False, max_buffer_size=_MAX_OBJECT,
                                    read_size=1024 * 1024)
        try:
            header = next(unpacker)
        except StopIteration:
            raise SnapshotFormatError("empty snapshot") from None
        except Exception as exc:
            raise SnapshotFormatError("unreadable snapshot header: %s" % exc) from None
        if (not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT
                or header.get("version") != SNAPSHOT_VERSION
                or type(header.get("applied_index")) is not int
                or type(header.get("count")) is not int):
            raise SnapshotFormatError("not a %s v%d snapshot header: %r"
                                      % (SNAPSHOT_FORMAT, SNAPSHOT_VERSION, header))
        applied_index = header["applied_index"]
        with self._replacing() as db:
            db.execute("DELETE FROM kv")
            try:
                for batch in unpacker:
                    if not isinstance(batch, dict) or not _all_str(batch):
                        raise SnapshotFormatError("snapshot batch is not a map of strings")
                    db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", batch.items())
            except SnapshotFormatError:
                raise
            except Exception as exc:
                raise SnapshotFormatError("corrupt snapshot body: %s" % exc) from None
            count = db.execute("SELECT count(*) FROM kv").fetchone()[0]
            if count != header["count"]:
                raise SnapshotFormatError("snapshot holds %d keys, header says %d"
                                          % (count, header["count"]))
            db.execute("UPDATE meta SET applied_index=?, keys=?", (applied_index, count))
        self._replaced(applied_index, count)
        self._log("INFO", "restored snapshot", [("applied-index", applied_index), ("keys", count)])

    def adopt(self, other: "KVStore", applied_index: int, keep_prefix: str | None = None) -> None:
        """Take over ``other``'s whole state as of ``applied_index``: how a
        user's backup, restored and checked off to the side, goes live. Keys
        under ``keep_prefix`` describe this cluster, not the backup's, so
        ours are kept and the backup's dropped."""
        other.commit()
        with self._replacing(attach=other.path) as db:
            if keep_prefix is None:
                db.execute("DELETE FROM kv")
                db.execute("INSERT INTO kv SELECT k, v FROM attached.kv")
            else:
                low, high = _prefix_range(keep_prefix)
                db.execute("DELETE FROM kv WHERE k < ? OR k >= ?", (low, high))
                db.execute("INSERT INTO kv SELECT k, v FROM attached.kv WHERE k < ? OR k >= ?",
                           (low, high))
            count = db.execute("SELECT count(*) FROM kv").fetchone()[0]
            db.execute("UPDATE meta SET applied_index=?, keys=?", (applied_index, count))
        self._replaced(applied_index, count)
        self._log("INFO", "restored backup", [("applied-index", applied_index), ("keys", count)])

    def reset(self) -> None:
        """Forget the whole state: an empty store at applied index 0."""
        with self._replacing() as db:
            db.execute("DELETE FROM kv")
            db.execute("UPDATE meta SET applied_index=0, keys=0")
        self._replaced(0, 0)

    @contextlib.contextmanager
    def _replacing(self, attach: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction on a connection of its own (see invariant 6),
        committed if the block completes and rolled back if it raises;
        ``attach`` is another store's file, readable as ``attached``."""
        self.commit()
        db = _connect(self.path)
        try:
            if attach is not None:
                db.execute("ATTACH DATABASE ? AS attached", (attach,))
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _replaced(self, applied_index: int, count: int) -> None:
        # Possibly on another thread than the reads: only say that the read
        # view and what reads remember are out of date, before the new index
        # can be seen.
        self._replacements += 1
        self._changed_index = applied_index
        self._generation = next(self._changes)
        self.applied_index = self._committed_index = applied_index
        self._keys = count


def _stream(reader: sqlite3.Connection, applied_index: int, writer: _Writer) -> int:
    count = reader.execute("SELECT count(*) FROM kv").fetchone()[0]
    packer = msgpack.Packer(use_bin_type=True)
    chunk = packer.pack({
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "applied_index": applied_index,
        "count": count,
    })
    writer.write(chunk)
    total = len(chunk)
    batch: dict[str, str] = {}
    batch_bytes = 0
    rows = reader.execute("SELECT k, v FROM kv")
    while True:
        page = rows.fetchmany(1000)
        if not page:
            break
        for key, value in page:
            batch[key] = value
            batch_bytes += len(key) + len(value)
            if len(batch) >= BATCH_PAIRS or batch_bytes >= BATCH_BYTES:
                chunk = packer.pack(batch)
                writer.write(chunk)
                total += len(chunk)
                batch = {}
                batch_bytes = 0
    if batch:
        chunk = packer.pack(batch)
        writer.write(chunk)
        total += len(chunk)
    return total


class KVReader:
    """A read-only view of a store's file from another process (an HTTP
    worker). Like the store's own reader it keeps one read transaction open
    until asked to look again (``renew``): starting one costs file-lock
    syscalls, more than the lookup. ``applied_index`` is read in the same
    transaction as the data, so a view that shows index N holds every write
    up to N and nothing after it."""

    def __init__(self, path: str) -> None:
        self.path = path
        # mode=ro: a worker must never write the state machine, even by mistake
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=30.0)
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.applied_index = 0
        self._memo = ViewMemo()
        self.renew()

    def renew(self) -> int:
        """Look at the newest committed state; returns its applied index."""
        db = self._db
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.execute("BEGIN")
        row = db.execute("SELECT applied_index FROM meta").fetchone()
        self.applied_index = row[0] if row is not None else 0
        self._memo = ViewMemo()
        return self.applied_index

    def get(self, key: str) -> str | None:
        return self._memo.value(self._db, key)

    def close(self) -> None:
        self._db.close()
