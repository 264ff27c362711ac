"""The volume watchdog and the start-up check, on their own and in an
in-process node: a volume deleted or replaced under a node, a write or fsync
error, and a disk too full to start on."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import shutil
import socket
import sqlite3
from types import SimpleNamespace

import pytest

from raftkv.config.settings import ConfigError, add_serve_arguments, load_settings
from raftkv.statemachine.commands import encode_set, encode_set_many
from raftkv.statemachine.kvstore import KVStore
from raftkv.http.api.replies import error_reply
from raftkv.node.errors import DiskFull, ShuttingDown, StorageFailed
from raftkv.node.runtime import Node
from raftkv.node.disk.watchdog import (
    EXIT_STORAGE_FAILED,
    ReportingSink,
    VolumeFailure,
    VolumeWatch,
    as_volume_failure,
    start_refusal,
)


@pytest.fixture
def volume(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    (path / "LOCK").write_text("1\n")
    return path


# --------------------------------------------------------------------------- VolumeWatch

def test_an_untouched_volume_is_fine(volume):
    watch = VolumeWatch(str(volume))
    (volume / "log").mkdir()  # what the node writes inside changes nothing
    assert watch.check() is None
    watch.raise_if_lost()


def test_a_deleted_directory_is_named(volume):
    watch = VolumeWatch(str(volume))
    shutil.rmtree(volume)
    failure = watch.check()
    assert (failure.path, failure.error, failure.lost) == (str(volume), "directory was deleted", True)
    assert failure.headline == "volume lost, shutting down"
    with pytest.raises(VolumeFailure):
        watch.raise_if_lost()


def test_a_replaced_directory_is_named(volume):
    watch = VolumeWatch(str(volume))
    volume.rename(volume.with_name("data.old"))
    volume.mkdir()
    failure = watch.check()
    assert (failure.path, failure.error) == (str(volume), "directory was replaced")


def test_a_copy_put_in_its_place_is_not_the_volume(volume):
    watch = VolumeWatch(str(volume))
    copy = volume.with_name("copy")
    shutil.copytree(volume, copy)
    volume.rename(volume.with_name("data.old"))
    copy.rename(volume)
    assert watch.check().error == "directory was replaced"


def test_a_deleted_or_replaced_lock_file_is_named(volume):
    watch = VolumeWatch(str(volume))
    lock = volume / "LOCK"
    keep = os.open(lock, os.O_RDONLY)  # as the volume holds it: the inode is not reused
    try:
        lock.unlink()
        failure = watch.check()
        assert (failure.path, failure.error) == (str(lock), "LOCK file was deleted")
        lock.write_text("2\n")
        assert watch.check().error == "LOCK file was replaced"
    finally:
        os.close(keep)


async def test_the_watchdog_reports_the_first_loss_and_stops(volume):
    watch = VolumeWatch(str(volume))
    lost: list[VolumeFailure] = []
    task = asyncio.ensure_future(watch.run(lost.append, period=0.01))
    await asyncio.sleep(0.05)
    assert not lost and not task.done()
    shutil.rmtree(volume)
    await asyncio.wait_for(task, 5)
    assert [f.error for f in lost] == ["directory was deleted"]


# --------------------------------------------------------------------------- failures of the disk

def test_disk_errors_become_failures_naming_the_path():
    full = as_volume_failure(OSError(errno.ENOSPC, "No space left on device"), "/v/log")
    assert (full.path, full.error, full.disk_full) == ("/v/log", "[Errno 28] No space left on device", True)
    assert full.headline == "failed to persist, shutting down"
    answer = full.request_error(unknown_outcome=True)
    assert isinstance(answer, DiskFull) and answer.unknown_outcome
    assert answer.message == "disk full: cannot write /v/log: [Errno 28] No space left on device"

    named = as_volume_failure(OSError(errno.EIO, "Input/output error", "/v/stable/stable.1.tmp"), "/v/stable")
    assert (named.path, named.disk_full) == ("/v/stable/stable.1.tmp", False)
    assert type(named.request_error(False)) is StorageFailed

    sqlite_full = sqlite3.OperationalError("database or disk is full")
    sqlite_full.sqlite_errorcode = 13  # what sqlite3 sets on SQLITE_FULL
    failure = as_volume_failure(sqlite_full, "/v/fsm.db")
    assert failure.disk_full and failure.error == "database or disk is full"

    assert as_volume_failure(ValueError("append at index 7, expected 5"), "/v/log") is None


def test_a_full_disk_answers_507_with_the_message():
    failure = VolumeFailure("/v/log", "[Errno 28] No space left on device", disk_full=True)
    reply = error_reply("n1", failure.request_error(unknown_outcome=True), None)
    assert reply.status == 507
    assert (b'"error": "disk full: cannot write /v/log: [Errno 28] No space left on device", '
            b'"outcome_unknown": true') in reply.body
    lost = VolumeFailure("/v", "directory was deleted", lost=True).request_error(unknown_outcome=False)
    reply = error_reply("n1", lost, None)
    assert reply.status == 503 and b"volume lost: /v: directory was deleted" in reply.body


def test_a_received_snapshot_that_cannot_be_written_is_reported():
    class Sink:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.EIO, "Input/output error")

        def cancel(self):
            self.cancelled = True

    reported: list[VolumeFailure] = []
    sink = ReportingSink(Sink(), "/v/snapshots", reported.append)
    with pytest.raises(OSError):  # the transport still sees it, and refuses the snapshot
        sink.write(b"x")
    with pytest.raises(OSError):
        sink.close()
    sink.cancel()
    assert [(f.path, f.disk_full) for f in reported] == [("/v/snapshots", True), ("/v/snapshots", False)]
    assert sink.sink.cancelled


# --------------------------------------------------------------------------- the start-up check

def test_the_minimum_is_a_setting_with_a_flag():
    assert load_settings({"RAFT_NODE_ID": "n1"}).min_free_bytes == 64 << 20
    assert load_settings({"RAFT_NODE_ID": "n1", "RAFT_MIN_FREE_BYTES": "4MiB"}).min_free_bytes == 4 << 20
    assert load_settings({"RAFT_NODE_ID": "n1"}, {"min_free_bytes": "0"}).min_free_bytes == 0
    with pytest.raises(ConfigError, match="RAFT_MIN_FREE_BYTES"):
        load_settings({"RAFT_NODE_ID": "n1", "RAFT_MIN_FREE_BYTES": "plenty"})
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert "--min-free-bytes SIZE" in parser.format_help()
    assert "(default: 64MiB) [env RAFT_MIN_FREE_BYTES]" in " ".join(parser.format_help().split())


def _statvfs(free: int, readonly: bool = False, inodes: int = 1000):
    return SimpleNamespace(f_bavail=free // 4096, f_frsize=4096, f_flag=os.ST_RDONLY if readonly else 0,
                           f_files=1000, f_favail=inodes)


def test_start_is_refused_below_the_minimum(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "statvfs", lambda path: _statvfs(4096 * 10))
    line = start_refusal(str(tmp_path / "data"), 64 * 1024 * 1024)
    assert line == (f"volume {tmp_path / 'data'} has 40960 bytes free; raftkv needs at least 67108864 "
                    "(RAFT_MIN_FREE_BYTES) to start: free space and start again")
    assert start_refusal(str(tmp_path / "data"), 40960) is None
    assert start_refusal(str(tmp_path / "data"), 0) is None


def test_start_is_refused_on_a_read_only_or_inode_less_volume(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "statvfs", lambda path: _statvfs(1 << 30, readonly=True))
    assert "is on a read-only file system: remount it read-write" in start_refusal(str(tmp_path), 0)
    monkeypatch.setattr(os, "statvfs", lambda path: _statvfs(1 << 30, inodes=0))
    assert "has no free inodes" in start_refusal(str(tmp_path), 0)


def test_a_volume_not_created_yet_is_checked_where_it_will_be(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(os, "statvfs", lambda path: seen.append(path) or _statvfs(1 << 30))
    volume = tmp_path / "a" / "b" / "data"
    assert start_refusal(str(volume), 1024) is None
    assert seen == [str(tmp_path)] and not (tmp_path / "a").exists()  # nothing written


def test_the_real_file_system_passes_a_small_minimum(tmp_path):
    assert start_refusal(str(tmp_path), 1024) is None
    assert "bytes free" in start_refusal(str(tmp_path), 1 << 62)


# --------------------------------------------------------------------------- an in-process node

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def leader(tmp_path):
    settings = load_settings({"RAFT_NODE_ID": "n1", "RAFT_BOOTSTRAP": "true",
                              "RAFT_VOLUME_DIR": str(tmp_path / "data"),
                              "HTTP_SERVER_PORT": str(_free_port()), "RAFT_SERVER_PORT": str(_free_port())})
    node = Node(settings)
    await node.start()
    try:
        async with asyncio.timeout(30):
            while not node.is_leader:
                await node.wait_state_change(0.1)
            await node.read_barrier()
        yield node
    finally:
        await node.stop()


async def test_a_deleted_volume_stops_the_node_within_seconds(leader):
    await asyncio.wait_for(leader.propose(encode_set("k", "v")), 10)
    assert leader.get_local("k") == "v"
    shutil.rmtree(leader.settings.data_dir)
    await asyncio.wait_for(leader.wait_shutdown_requested(), 10)
    assert leader.exit_code == EXIT_STORAGE_FAILED and leader.stopping
    with pytest.raises(StorageFailed, match="volume lost: .*: directory was deleted"):
        leader.get_local("k")  # the stale read of a file no one can find any more
    with pytest.raises(StorageFailed):
        leader.propose_nowait(encode_set("k", "w"))


async def test_a_write_to_a_deleted_volume_is_never_acknowledged(leader):
    shutil.rmtree(leader.settings.data_dir)
    # the write lands in unlinked files: the check after it refuses to ack
    with pytest.raises(StorageFailed, match="directory was deleted"):
        await asyncio.wait_for(leader.propose(encode_set("k", "v")), 10)
    assert leader.exit_code == EXIT_STORAGE_FAILED


async def test_a_write_failing_because_the_volume_is_gone_names_the_cause(leader, monkeypatch):
    def gone(entries):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/somewhere/log/x.seg")
    monkeypatch.setattr(leader.volume.log, "append", gone)
    shutil.rmtree(leader.settings.data_dir)
    with pytest.raises(StorageFailed, match="volume lost: .*: directory was deleted"):
        await asyncio.wait_for(leader.propose(encode_set("k", "v")), 10)


async def test_a_full_disk_fails_the_waiting_write_with_disk_full(leader, monkeypatch):
    def no_space(entries):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(leader.volume.log, "append", no_space)
    with pytest.raises(DiskFull) as info:
        await asyncio.wait_for(leader.propose(encode_set("k", "v")), 10)
    log_dir = os.path.join(os.path.abspath(leader.settings.data_dir), "log")
    assert info.value.message == f"disk full: cannot write {log_dir}: [Errno 28] No space left on device"
    assert info.value.unknown_outcome  # followers may hold it: it can still commit
    assert leader.exit_code == EXIT_STORAGE_FAILED
    await asyncio.wait_for(leader.wait_shutdown_requested(), 1)
    with pytest.raises(DiskFull):
        leader.get_local("k")


async def test_a_state_machine_that_cannot_write_stops_the_node(leader, monkeypatch):
    def full():
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorcode = 13
        raise exc
    monkeypatch.setattr(leader.volume.kv, "commit", full)
    with pytest.raises(DiskFull, match=r"disk full: cannot write .*fsm\.db: database or disk is full"):
        await asyncio.wait_for(leader.propose(encode_set("k", "v")), 10)
    assert leader.exit_code == EXIT_STORAGE_FAILED


async def test_a_batch_the_state_machine_failed_half_way_is_not_committed(leader, monkeypatch):
    kv = leader.volume.kv
    before = kv.applied_index
    real_put = kv._put

    def put(key, value):
        if key == "b":  # SQLite undid this statement and kept the transaction
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode = 13
            raise exc
        real_put(key, value)
    monkeypatch.setattr(kv, "_put", put)
    with pytest.raises(DiskFull):
        await asyncio.wait_for(leader.propose(encode_set_many({"a": "1", "b": "2"})), 10)
    await leader.stop()
    reopened = KVStore(kv.path)
    try:
        # "a" without "b" at the batch's index would be a state no other node has
        assert reopened.applied_index == before and reopened.get("a") is None
    finally:
        reopened.close()


async def test_a_plain_shutdown_refuses_reads_as_shutting_down(leader):
    await leader.stop()
    with pytest.raises(ShuttingDown) as info:
        leader.get_local("k")
    assert type(info.value) is ShuttingDown and leader.exit_code == 0
