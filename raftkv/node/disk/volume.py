"""A node's volume (``RAFT_VOLUME_DIR``): the lock, the durable stores, and
what start-up reads back from them.

``log/`` (the Raft log), ``stable/`` (term, vote, commit hint),
``snapshots/``, ``fsm.db`` (the SQLite state machine; not fsync'd — the log
replays what it missed) and ``uploads/`` (backups being restored). A
:class:`Volume` is also the executor's :class:`~raftkv.node.executor.Storage`.

An operator may add ``peers.json`` to recover from a lost quorum
(:func:`read_peers_file`, :meth:`Volume.recover_cluster`); once applied it
is renamed ``peers.json.recovered``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import BinaryIO

from raftkv.observability import hclog
from raftkv.raft.admission import MAX_SANE
from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import Entry, EntryType, SnapshotMeta
from raftkv.raft.node import PersistentState
from raftkv.statemachine.commands import RESERVED_PREFIX
from raftkv.statemachine.kvstore import KVStore
from raftkv.storage import LogStore, SnapshotStore, StableStore

from .snapshots import restore_state_machine

fsm_log = hclog.get_logger("fsm")
raft_log = hclog.get_logger("raft")

__all__ = ["PEERS_FILE", "BadPeersFile", "Volume", "VolumeInUse", "read_peers_file"]

# Consul's and Vault's name: an operator drops it in the volume to recover
# from a lost quorum; it is renamed once applied so a restart does not redo it
PEERS_FILE = "peers.json"
PEERS_FILE_DONE = "peers.json.recovered"
# the stable store's key for the volume's identity
VOLUME_ID_KEY = "volume_id"


class VolumeInUse(RuntimeError):
    pass


class BadPeersFile(ValueError):
    """peers.json cannot be used; the message names the problem."""


def read_peers_file(data_dir: str) -> Configuration | None:
    """The configuration a ``peers.json`` in the volume asks for, or None when
    there is none. Only reads: a bad file refuses the start before anything
    in the volume is opened or changed."""
    path = os.path.join(data_dir, PEERS_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise BadPeersFile(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise BadPeersFile(f"{path}: expected a JSON list of servers, got {type(items).__name__}")
    if not items:
        raise BadPeersFile(f"{path}: the list of servers is empty")
    servers: list[Server] = []
    for position, item in enumerate(items):
        where = f"{path}: server #{position + 1}"
        if not isinstance(item, dict):
            raise BadPeersFile(f"{where}: expected an object with id and address")
        server_id, address = item.get("id"), item.get("address")
        if not isinstance(server_id, str) or not server_id.strip():
            raise BadPeersFile(f"{where}: missing id")
        if not isinstance(address, str) or not address.strip():
            raise BadPeersFile(f"{where} ({server_id}): missing address")
        non_voter = item.get("non_voter", False)
        if not isinstance(non_voter, bool):
            raise BadPeersFile(f"{where} ({server_id}): non_voter must be true or false")
        if any(s.id == server_id for s in servers):
            raise BadPeersFile(f"{path}: duplicate id {server_id!r}")
        if any(s.address == address for s in servers):
            raise BadPeersFile(f"{path}: duplicate address {address!r}")
        servers.append(Server(server_id, address, Suffrage.NONVOTER if non_voter else Suffrage.VOTER))
    configuration = Configuration(tuple(servers))
    if not configuration.voters:
        raise BadPeersFile(f"{path}: no voter (every server has non_voter: true)")
    return configuration


class Volume:
    def __init__(self, data_dir: str, store_class: type[KVStore] = KVStore) -> None:
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self._lock_fd = self._lock(data_dir)
        # Every store is checked for corruption before any of them repairs or
        # removes anything, so that a refused volume stays as it was found.
        # The stable store's commit hint and the newest snapshot say how far
        # the log must reach: entries applied here were durable here first.
        self._newest_snapshot: tuple[SnapshotMeta, BinaryIO] | None = None
        try:
            self.stable = StableStore(os.path.join(data_dir, "stable"), log=raft_log.log_fields)
            self.snapshots = SnapshotStore(os.path.join(data_dir, "snapshots"), retain=2,
                                           log=hclog.get_logger("raft.snapshot").log_fields,
                                           remove_leftovers=False)
            self._newest_snapshot = self.snapshots.open_newest()
            held = self._newest_snapshot[0].index if self._newest_snapshot is not None else 0
            applied = self.stable.commit_hint
            self.log = LogStore(os.path.join(data_dir, "log"), log=raft_log.log_fields,
                                durable_through=applied if applied > held else 0)
        except BaseException:
            if self._newest_snapshot is not None:
                self._newest_snapshot[1].close()
            self._unlock()
            raise
        self.snapshots.remove_leftovers()
        self.uploads = os.path.join(data_dir, "uploads")
        shutil.rmtree(self.uploads, ignore_errors=True)  # a restore cut short by a crash
        os.makedirs(self.uploads)
        # KVStore, or a variant reading another format (raftkv/statemachine/hraftd.py)
        self.kv = store_class(os.path.join(data_dir, "fsm.db"), log=fsm_log.log_fields)
        # set by the runtime: a restored backup is stored as a snapshot the
        # core must hear about; an installed one is counted
        self.on_backup_stored: Callable[[SnapshotMeta], object] = lambda meta: None
        self.on_installed: Callable[[], None] = lambda: None

    @staticmethod
    def _lock(data_dir: str) -> int:
        """One process per volume: a second one opening the same log would
        "repair" the tail the first is still writing. The lock dies with the
        process, so a kill -9 never leaves a stale lock behind."""
        fd = os.open(os.path.join(data_dir, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise VolumeInUse(f"volume {data_dir} is in use by another raftkv process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    # ------------------------------------------------------------------ start-up

    def recover_cluster(self, configuration: Configuration) -> int:
        """hashicorp's RecoverCluster: keep the log and the snapshots, and
        append ``configuration`` after the last index, in a new term, with
        the commit hint at it, so the core starts with it as the latest
        committed configuration. Returns the entry's index. Whatever the log
        held beyond the old commit index becomes committed too, as in
        hashicorp: no quorum is left that could say otherwise."""
        snapshots = self.snapshots.list()
        snap_index = max((m.index for m in snapshots), default=0)
        snap_term = max((m.term for m in snapshots if m.index == snap_index), default=0)
        last_index, last_term = self.log.last_index(), 0
        if last_index:
            if last_index < snap_index:
                # a log wholly behind the newest snapshot is one the core would
                # drop anyway; the entry must follow the snapshot
                self.log.truncate_from(self.log.first_index())
                last_index = 0
            else:
                entry = self.log.get(last_index)
                assert entry is not None  # last_index is in the log
                last_term = entry.term
        index = max(last_index, snap_index) + 1
        # A term of its own, above any this node has seen: survivors with logs
        # of different lengths append the entry at different indexes, and no
        # two different entries may share an index and a term (Log Matching).
        term = max(self.stable.term, last_term, snap_term) + 1
        rewind = term > MAX_SANE and max(last_term, snap_term) < MAX_SANE
        if rewind:
            # The hard state holds a term no message may carry (forged
            # messages drove the cluster there before raftkv refused them):
            # the recovered cluster goes on from its log's last term instead.
            term = max(last_term, snap_term) + 1
            raft_log.warn("recovering from a term that cannot be incremented, going on from the log's",
                          **{"stored-term": self.stable.term, "term": term})
        self.stable.set_hard_state(term, None, rewind=rewind)
        self.log.append([Entry(index, term, EntryType.CONFIGURATION, configuration.encode())])
        self.log.sync()
        self.stable.set_commit_hint(index)
        self.stable.flush()
        os.replace(os.path.join(self.data_dir, PEERS_FILE), os.path.join(self.data_dir, PEERS_FILE_DONE))
        raft_log.warn("found peers.json file, recovering Raft configuration, renamed it",
                      index=index, term=term, configuration=configuration.describe(),
                      **{"renamed-to": PEERS_FILE_DONE})
        return index

    def recover(self) -> PersistentState:
        """What the core starts from: hard state, the newest snapshot
        (restored into the state machine unless it is already past it) and
        the log. Damage to any of them was refused when the volume opened."""
        snapshots = self.snapshots.list()
        known = max([self.log.last_index()] + [m.index for m in snapshots])
        if self.kv.applied_index > known:
            # not this log's state machine (the rest of the volume was wiped):
            # keeping it would skip the first entries the new log applies
            fsm_log.warn("state machine file is ahead of the log and snapshots, discarding it",
                         **{"applied-index": self.kv.applied_index, "last-known-index": known})
            self.kv.reset()
        snapshot_meta = self._restore_latest_snapshot()
        entries: tuple = ()
        if self.log.last_index():
            entries = tuple(self.log.entries(self.log.first_index(), self.log.last_index()))
        return PersistentState(
            volume_id=self._volume_id(has_log=bool(entries) or snapshot_meta is not None),
            current_term=self.stable.term,
            voted_for=self.stable.voted_for,
            # what the state machine has applied is committed too
            commit_index=max(self.stable.commit_hint, self.kv.applied_index),
            snapshot=snapshot_meta,
            entries=entries,
        )

    def _volume_id(self, has_log: bool) -> str:
        """This volume's identity: a random id made when the volume starts
        out empty, kept in the stable store. A volume with neither log nor
        snapshot holds nothing it could have acknowledged, so it gets a new
        id even if a stable store survived: the leader then sees a new
        server under the old name and re-admits it only once caught up
        (docs/disks.md)."""
        current = self.stable.get(VOLUME_ID_KEY)
        if has_log and isinstance(current, str) and current:
            return current
        new = secrets.token_hex(8)
        self.stable.set(VOLUME_ID_KEY, new)
        raft_log.info("new volume identity", volume=new, path=self.data_dir,
                      **({"previous": current} if current else {}))
        return new

    def _restore_latest_snapshot(self) -> SnapshotMeta | None:
        """Load the newest snapshot, verified when the volume opened, into
        the state machine. Never an older one instead: the log may be
        compacted past it, and the core would start with a hole. A snapshot
        that passed its CRC but does not restore (another RAFT_FSM's format)
        fails the start."""
        newest, self._newest_snapshot = self._newest_snapshot, None
        if newest is None:
            return None
        meta, f = newest
        fields = [("id", meta.id), ("last-index", meta.index), ("last-term", meta.term),
                  ("size-in-bytes", meta.size)]
        with f:
            if self.kv.applied_index >= meta.index:
                # the state machine's own file is already past it
                raft_log.log_fields("INFO", "state machine is ahead of the snapshot, not restoring",
                                    fields + [("applied-index", self.kv.applied_index)])
                return meta
            raft_log.log_fields("INFO", "starting restore from snapshot", fields)
            self.kv.expect_restore(meta.index)
            restore_state_machine(self.kv, meta, f)
        raft_log.log_fields("INFO", "restored from snapshot", fields)
        return meta

    # ------------------------------------------------------------------ Storage (disk thread)

    def set_hard_state(self, term: int, voted_for: str | None) -> None:
        self.stable.set_hard_state(term, voted_for)

    def append(self, entries: Sequence[Entry]) -> None:
        self.log.append(entries)

    def truncate_from(self, index: int) -> None:
        self.log.truncate_from(index)

    def compact_through(self, index: int) -> None:
        self.log.compact_through(index)

    def sync(self) -> None:
        self.log.sync()

    def restore_snapshot(self, meta: SnapshotMeta, data: object) -> None:
        if isinstance(data, KVStore):
            self._restore_backup(meta, data)
        else:
            self._restore_received(meta, data)
        self.stable.set_commit_hint(meta.index)

    def _restore_backup(self, meta: SnapshotMeta, backup: KVStore) -> None:
        """A user's backup becomes the state at ``meta.index`` and is stored
        as our snapshot there, which is what followers will be sent."""
        self.kv.adopt(backup, meta.index, keep_prefix=RESERVED_PREFIX)
        backup.close()
        writer = self.snapshots.create(meta)
        try:
            self.kv.snapshot()(writer)
        except BaseException:
            writer.cancel()
            raise
        self.on_backup_stored(writer.close())

    def _restore_received(self, meta: SnapshotMeta, handle: object) -> None:
        # ``handle`` is the SnapshotMeta our snapshot store returned when the
        # transport finished writing the received bytes; it is already durable.
        stored = handle if isinstance(handle, SnapshotMeta) else meta
        _, f = self.snapshots.open(stored.id)
        with f:
            self.kv.expect_restore(stored.index)
            restore_state_machine(self.kv, stored, f)
        self.on_installed()

    # ------------------------------------------------------------------ snapshots and uploads

    def write_snapshot(self, meta: SnapshotMeta, persist) -> SnapshotMeta:
        """(snapshot thread) Write a captured state as a snapshot."""
        writer = self.snapshots.create(meta)
        try:
            persist(writer)
        except BaseException:
            writer.cancel()
            raise
        return writer.close()

    def upload_file(self) -> tuple[int, str]:
        """A new file in the volume for an uploaded backup: (fd, path)."""
        return tempfile.mkstemp(prefix="restore-", dir=self.uploads)

    # ------------------------------------------------------------------ shutdown

    def _drop_newest_snapshot(self) -> None:
        if self._newest_snapshot is not None:
            self._newest_snapshot[1].close()
            self._newest_snapshot = None

    def close(self) -> None:
        self._drop_newest_snapshot()
        self.stable.set_commit_hint(self.kv.applied_index)
        self.stable.flush()
        self.stable.close()
        self.log.close()
        self.kv.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def abort(self) -> None:
        """Close what can be closed after a failed start, quietly."""
        self._drop_newest_snapshot()
        for closer in (self.log.close, self.stable.close, self.kv.close):
            try:
                closer()
            except Exception:
                pass
        self._unlock()
