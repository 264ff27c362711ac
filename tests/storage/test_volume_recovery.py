"""A volume at start-up: torn tails are cut, corruption anywhere is refused
with StorageCorruptError before any file changes (no repair of the other
stores either), and the lock goes with the refusal."""

from __future__ import annotations

import os

import pytest

from raftkv.node.disk.volume import Volume
from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import Entry, EntryType, SnapshotMeta
from raftkv.storage import RECOVERY, StableStore, StorageCorruptError

CONF = Configuration((Server("n1", "127.0.0.1:9000"),))


def _entries(lo: int, hi: int) -> list[Entry]:
    return [Entry(i, 1, EntryType.NOOP, b"") for i in range(lo, hi + 1)]


def _volume(data: str, last: int, applied: int, snapshot_at: int = 0) -> None:
    """A closed volume: log 1..last, a snapshot at ``snapshot_at`` (if any)
    and a commit hint of ``applied``."""
    volume = Volume(data)
    volume.append(_entries(1, last))
    volume.sync()
    if snapshot_at:
        volume.kv.mark_applied(snapshot_at)
        volume.write_snapshot(SnapshotMeta(snapshot_at, 1, CONF, 1), volume.kv.snapshot())
    volume.close()
    # close() records what the state machine applied; the test says instead
    stable = StableStore(os.path.join(data, "stable"))
    stable.set_commit_hint(applied)
    stable.flush()


def _last_segment(data: str) -> str:
    log = os.path.join(data, "log")
    return os.path.join(log, max(n for n in os.listdir(log) if n.endswith(".seg")))


def _snapshot_dirs(data: str) -> list[str]:
    snaps = os.path.join(data, "snapshots")
    return [os.path.join(snaps, n) for n in sorted(os.listdir(snaps))]


def _cut(path: str, n: int) -> int:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - n)
    return size - n


def _tree(data: str) -> dict[str, bytes]:
    out = {}
    for root, _dirs, names in os.walk(data):
        for name in names:
            full = os.path.join(root, name)
            if full == os.path.join(data, "LOCK"):  # holds the pid of whoever opened it last
                continue
            with open(full, "rb") as f:
                out[os.path.relpath(full, data)] = f.read()
    return out


def _refused(data: str) -> StorageCorruptError:
    before = _tree(data)
    with pytest.raises(StorageCorruptError) as caught:
        Volume(data)
    assert _tree(data) == before
    # the lock went with the refusal: a second try meets the same corruption
    with pytest.raises(StorageCorruptError):
        Volume(data)
    assert str(caught.value).endswith(RECOVERY)
    return caught.value


def test_a_truncated_newest_snapshot_is_refused(tmp_path):
    data = str(tmp_path)
    _volume(data, last=30, applied=30, snapshot_at=20)
    [snap] = _snapshot_dirs(data)
    state = os.path.join(snap, "state.bin")
    kept = _cut(state, 5)
    # a torn log tail and an unfinished snapshot: both would be repaired on a
    # good start; on a refused one they stay for the operator to look at
    with open(_last_segment(data), "ab") as f:
        f.write(b"\x00\x00\x00\x40partial")
    os.mkdir(os.path.join(data, "snapshots", "1-31-1.tmp"))
    err = _refused(data)
    assert (err.path, err.offset) == (state, kept)
    assert err.problem.startswith(f"the newest snapshot's data is {kept} bytes, meta.json says {kept + 5}")


def test_a_flipped_byte_in_the_newest_snapshot_is_refused(tmp_path):
    data = str(tmp_path)
    _volume(data, last=30, applied=30, snapshot_at=20)
    state = os.path.join(_snapshot_dirs(data)[0], "state.bin")
    with open(state, "r+b") as f:
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 1]))
    err = _refused(data)
    assert (err.path, err.offset) == (state, 0) and "CRC checksum failed" in err.problem


def test_a_log_shorter_than_the_commit_hint_without_a_snapshot_is_refused(tmp_path):
    data = str(tmp_path)
    _volume(data, last=20, applied=20)
    seg = _last_segment(data)
    _cut(seg, 2)
    err = _refused(data)
    assert err.path == seg
    assert err.problem == ("the log ends at index 19, but index 20 was durable here and no snapshot holds it "
                           "(the last record is damaged: short record)")


def test_a_missing_log_below_the_commit_hint_is_refused(tmp_path):
    data = str(tmp_path)
    _volume(data, last=20, applied=20)
    os.unlink(_last_segment(data))
    err = _refused(data)
    assert (err.path, err.offset) == (os.path.join(data, "log"), 0)
    assert err.problem.startswith("the log ends at index 0, but index 20 was durable here")


def test_a_short_log_is_fine_when_a_snapshot_holds_what_it_lost(tmp_path):
    data = str(tmp_path)
    _volume(data, last=20, applied=20, snapshot_at=20)
    _cut(_last_segment(data), 2)
    volume = Volume(data)
    try:
        state = volume.recover()
    finally:
        volume.close()
    assert state.snapshot.index == 20 and state.entries[-1].index == 19


def test_a_torn_tail_past_the_commit_hint_is_cut(tmp_path):
    data = str(tmp_path)
    _volume(data, last=20, applied=15)
    _cut(_last_segment(data), 2)
    volume = Volume(data)
    try:
        state = volume.recover()
    finally:
        volume.close()
    assert [e.index for e in state.entries] == list(range(1, 20))


def test_a_flipped_byte_mid_log_is_refused_and_nothing_else_is_repaired(tmp_path):
    data = str(tmp_path)
    _volume(data, last=50, applied=10)
    seg = _last_segment(data)
    with open(seg, "r+b") as f:
        f.seek(os.path.getsize(seg) // 2)
        f.write(b"\xde\xad\xbe\xef\xde\xad\xbe\xef")
    os.mkdir(os.path.join(data, "snapshots", "1-51-1.tmp"))
    err = _refused(data)
    assert err.path == seg and "and an intact record follows at offset" in err.problem
