"""The volume's health: a node stops, loudly, when its volume fails or goes
away, and refuses to start on one that cannot take writes.

Theory of operation
-------------------
A node's files stay open while it runs, so a volume directory deleted
(``rm -rf``) or swapped for another under it changes nothing the node
would notice: writes go to unlinked inodes and the SQLite state machine keeps
answering reads from a file no one can find any more. After a restart that
data is gone; answering from it, or acknowledging writes into it, is
promising what the node no longer holds.

:class:`VolumeWatch` remembers the identity (``st_dev``, ``st_ino``) of the
volume's ``LOCK`` file at start. The volume keeps that file open for its
lifetime (the flock), so its inode cannot be reused while the node runs:
if ``stat(<volume>/LOCK)`` still names that inode, the directory at the path
is the node's volume. One ``stat`` therefore answers "is this still my
volume?"; only when it says no does :meth:`VolumeWatch.check` look closer to
name what happened (directory deleted, replaced, LOCK file deleted ...). The
runtime asks after every batch it makes durable, before anything about that
batch is sent or acknowledged, and :meth:`VolumeWatch.run` asks every
second while nothing is written.

Every write or fsync error of the volume is fatal as well, as in etcd: after
a failed fsync the kernel may have dropped the dirty pages, so no write since
the last good one can be trusted, and retrying could report durable what is
not. :class:`GuardedStorage` (the executor's storage) and the runtime turn
such errors into a :class:`VolumeFailure` naming the file or store and the
error; the node then fails what is waiting (``DiskFull`` -> 507 when the
disk is full, ``StorageFailed`` -> 503 otherwise), stops serving, and exits
with :data:`EXIT_STORAGE_FAILED`.

:func:`start_refusal` is the check ``raftkv serve`` makes before anything is
written: a read-only or unwritable volume, or less free space than
``RAFT_MIN_FREE_BYTES``, refuses the start with one line saying what to do,
and the exit code :data:`EXIT_VOLUME_UNUSABLE`, which a supervisor can be
told not to restart on (a restart cannot free space).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import stat
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from raftkv.raft.messages import Entry, SnapshotMeta

from ..errors import DiskFull, StorageFailed

if TYPE_CHECKING:
    from .volume import Volume

__all__ = ["EXIT_STORAGE_FAILED", "EXIT_VOLUME_UNUSABLE", "GuardedStorage", "ReportingSink", "VolumeFailure",
           "VolumeWatch", "as_volume_failure", "io_failure", "start_refusal"]

# sysexits.h EX_IOERR: the volume failed (write or fsync error) or went away
# while the node ran. A restart may be right: a deleted volume starts anew and
# catches up; a still-full disk is refused with EXIT_VOLUME_UNUSABLE.
EXIT_STORAGE_FAILED = 74
# sysexits.h EX_CANTCREAT: the volume cannot take writes, so the node did not
# start. Only an operator can fix that; restarting again is pointless.
EXIT_VOLUME_UNUSABLE = 73

# Volume._lock's file: held open (and flocked) for the node's lifetime.
LOCK_FILE = "LOCK"
WATCH_PERIOD = 1.0

_DISK_FULL_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT))
_SQLITE_FULL = 13  # SQLITE_FULL, the primary code of "database or disk is full"


class VolumeFailure(Exception):
    """The volume can no longer be trusted: ``path`` and what is wrong.
    ``lost``: the volume directory itself is gone or replaced (rather than
    a write failing); ``disk_full``: a write failed for want of space."""

    def __init__(self, path: str, error: str, *, lost: bool = False, disk_full: bool = False) -> None:
        super().__init__(f"{path}: {error}")
        self.path = path
        self.error = error
        self.lost = lost
        self.disk_full = disk_full

    @property
    def headline(self) -> str:
        """The ERROR line's message."""
        return "volume lost, shutting down" if self.lost else "failed to persist, shutting down"

    def request_error(self, unknown_outcome: bool) -> StorageFailed:
        """What a request this node can no longer serve fails with. A new
        one each time: a raised exception keeps its traceback."""
        if self.disk_full:
            return DiskFull(f"disk full: cannot write {self.path}: {self.error}", unknown_outcome)
        if self.lost:
            return StorageFailed(f"volume lost: {self.path}: {self.error}", unknown_outcome)
        return StorageFailed(f"storage failed: cannot write {self.path}: {self.error}", unknown_outcome)


def io_failure(exc: OSError | sqlite3.Error, path: str) -> VolumeFailure:
    """An error of the disk, raised while writing to ``path`` (or to the file
    the error names), as a VolumeFailure."""
    if isinstance(exc, OSError):
        if isinstance(exc.filename, (str, bytes)):
            path = os.fsdecode(exc.filename)
        error = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None else str(exc)
        return VolumeFailure(path, error, disk_full=exc.errno in _DISK_FULL_ERRNOS)
    code = getattr(exc, "sqlite_errorcode", None)
    return VolumeFailure(path, str(exc), disk_full=code is not None and code & 0xFF == _SQLITE_FULL)


def as_volume_failure(exc: BaseException, path: str) -> VolumeFailure | None:
    """``exc``, raised while writing to ``path``, as a VolumeFailure; None if
    it is not an error of the disk (a bug, which is reported as such)."""
    if isinstance(exc, VolumeFailure):
        return exc
    if isinstance(exc, (OSError, sqlite3.Error)):
        return io_failure(exc, path)
    return None


class GuardedStorage:
    """The executor's :class:`~raftkv.node.executor.Storage` over a
    :class:`~raftkv.node.disk.volume.Volume`: a write or fsync error comes out
    as a :class:`VolumeFailure` naming the store it happened in, so that the
    ERROR line and the 507 answer can name the path."""

    __slots__ = ("_data", "_log", "_stable", "volume")

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self._log = os.path.abspath(volume.log.path)
        self._stable = os.path.abspath(volume.stable.path)
        self._data = os.path.abspath(volume.data_dir)

    def set_hard_state(self, term: int, voted_for: str | None) -> None:
        try:
            self.volume.set_hard_state(term, voted_for)
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, self._stable) from exc

    def append(self, entries: Sequence[Entry]) -> None:
        try:
            self.volume.append(entries)
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, self._log) from exc

    def truncate_from(self, index: int) -> None:
        try:
            self.volume.truncate_from(index)
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, self._log) from exc

    def compact_through(self, index: int) -> None:
        try:
            self.volume.compact_through(index)
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, self._log) from exc

    def sync(self) -> None:
        try:
            self.volume.sync()
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, self._log) from exc

    def restore_snapshot(self, meta: SnapshotMeta, data: object) -> None:
        try:
            self.volume.restore_snapshot(meta, data)
        except (OSError, sqlite3.Error) as exc:
            raise io_failure(exc, self._data) from exc


class ReportingSink:
    """A snapshot sink (what the transport streams a received snapshot into)
    that reports a write error of the volume before raising it: the
    transport only refuses the snapshot, and the leader would send it again
    and again to a disk that cannot take it. ``report`` may be called from
    the transport's worker thread."""

    def __init__(self, sink: Any, path: str, report: Callable[[VolumeFailure], None]) -> None:
        self.sink = sink
        self.path = path
        self.report = report

    def write(self, data: bytes) -> int:
        try:
            return self.sink.write(data)
        except (OSError, sqlite3.Error) as exc:
            self.report(io_failure(exc, self.path))
            raise

    def close(self) -> Any:
        try:
            return self.sink.close()
        except (OSError, sqlite3.Error) as exc:
            self.report(io_failure(exc, self.path))
            raise

    def cancel(self) -> None:
        self.sink.cancel()


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class VolumeWatch:
    """Is the directory at the volume's path still the volume this node
    opened? See the module docstring. Create it once the volume is open
    (its LOCK file exists and is held)."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.abspath(data_dir)
        self.lock_path = os.path.join(self.path, LOCK_FILE)
        self._dir = _identity(os.stat(self.path))
        self._lock = _identity(os.stat(self.lock_path))

    def check(self) -> VolumeFailure | None:
        """What is wrong with the volume, or None while it is the one opened."""
        try:
            if _identity(os.stat(self.lock_path)) == self._lock:
                return None
        except OSError:
            pass
        return self._diagnose()

    def raise_if_lost(self) -> None:
        failure = self.check()
        if failure is not None:
            raise failure

    def _diagnose(self) -> VolumeFailure | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return VolumeFailure(self.path, "directory was deleted", lost=True)
        except OSError as exc:
            return VolumeFailure(self.path, f"cannot stat the directory: [Errno {exc.errno}] {exc.strerror}",
                                 lost=True)
        if not stat.S_ISDIR(st.st_mode):
            return VolumeFailure(self.path, "is no longer a directory", lost=True)
        if _identity(st) != self._dir:
            return VolumeFailure(self.path, "directory was replaced", lost=True)
        try:
            lock = os.stat(self.lock_path)
        except FileNotFoundError:
            return VolumeFailure(self.lock_path, "LOCK file was deleted", lost=True)
        except OSError as exc:
            return VolumeFailure(self.lock_path, f"cannot stat the LOCK file: [Errno {exc.errno}] {exc.strerror}",
                                 lost=True)
        if _identity(lock) != self._lock:
            return VolumeFailure(self.lock_path, "LOCK file was replaced", lost=True)
        return None  # the first look raced with something that is back now

    async def run(self, on_lost: Callable[[VolumeFailure], None], period: float = WATCH_PERIOD) -> None:
        """Look every ``period`` seconds; report the first loss and return.
        (One stat of a local path: cheap enough for the event loop.)"""
        while True:
            await asyncio.sleep(period)
            failure = self.check()
            if failure is not None:
                on_lost(failure)
                return


def _existing(path: str) -> str:
    """``path``, or its nearest ancestor that exists (a volume not created yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def start_refusal(data_dir: str, min_free_bytes: int) -> str | None:
    """Why a node must not start on ``data_dir`` (read-only, not writable,
    no free inodes, or less than ``min_free_bytes`` free), as the line to
    log; None when it may. Writes nothing. A volume whose file system cannot
    be examined is let through: opening it will say what is wrong."""
    volume = os.path.abspath(data_dir)
    where = _existing(volume)
    try:
        st = os.statvfs(where)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return f"volume {volume} is on a read-only file system: remount it read-write and start again"
    if not os.access(where, os.W_OK | os.X_OK):
        return (f"volume {volume} is not writable by this user (uid {os.geteuid()}): "
                "fix its permissions and start again")
    if st.f_files and not st.f_favail:
        return f"volume {volume} has no free inodes; raftkv cannot create files there: free some and start again"
    free = st.f_bavail * st.f_frsize
    if free < min_free_bytes:
        return (f"volume {volume} has {free} bytes free; raftkv needs at least {min_free_bytes} "
                "(RAFT_MIN_FREE_BYTES) to start: free space and start again")
    return None
