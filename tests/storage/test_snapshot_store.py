"""SnapshotStore: create/list/open, retention, leftovers, and corruption (skipped
by latest_valid for a backup, refused by open_newest for a starting node)."""

from __future__ import annotations

import json
import os

import pytest

from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import SnapshotMeta
from raftkv.storage import RECOVERY, StorageCorruptError
from raftkv.storage.snapshot_store import SnapshotCorruptError, SnapshotStore

CONF = Configuration((Server("n1", "127.0.0.1:9000"), Server("n2", "127.0.0.1:9001", Suffrage.NONVOTER)))


class Recorder:
    def __init__(self):
        self.records = []

    def __call__(self, level, message, fields):
        self.records.append((level, message, dict(fields)))

    def find(self, level, message):
        return [f for lv, m, f in self.records if lv == level and m == message]


def take(store, index, term=2, chunks=(b"hello ", b"world")):
    w = store.create(SnapshotMeta(index, term, CONF, configuration_index=index - 1))
    for c in chunks:
        w.write(c)
    return w.close()


def test_create_list_open(tmp_path):
    rec = Recorder()
    store = SnapshotStore(str(tmp_path / "snapshots"), log=rec)
    w = store.create(SnapshotMeta(32, 2, CONF, 5))
    assert w.path.endswith(".tmp") and os.path.isdir(w.path)
    [created] = rec.find("INFO", "creating new snapshot")
    assert created["path"] == w.path
    assert w.path == os.path.join(str(tmp_path / "snapshots"), w.id + ".tmp")
    w.write(b"abc")
    w.write(b"def")
    meta = w.close()
    assert meta.id.startswith("2-32-") and meta.id == w.id
    assert (meta.index, meta.term, meta.configuration, meta.configuration_index, meta.size) == (32, 2, CONF, 5, 6)
    assert not os.path.exists(w.path)
    assert store.list() == [meta]
    got, f = store.open(meta.id)
    with f:
        assert got == meta
        assert got.configuration.get("n2").suffrage is Suffrage.NONVOTER
        assert f.read() == b"abcdef"
    doc = json.load(open(os.path.join(store.dir, meta.id, "meta.json")))
    assert Configuration.decode(json.dumps(doc["configuration"]).encode()) == CONF
    assert doc["size"] == 6


def test_list_is_newest_first_and_retain_two(tmp_path):
    rec = Recorder()
    store = SnapshotStore(str(tmp_path), log=rec)
    a = take(store, 10)
    b = take(store, 20)
    assert [m.id for m in store.list()] == [b.id, a.id]
    c = take(store, 30)
    assert [m.id for m in store.list()] == [c.id, b.id]
    assert not os.path.exists(os.path.join(str(tmp_path), a.id))
    [reaped] = rec.find("INFO", "reaping snapshot")
    assert reaped["path"] == os.path.join(str(tmp_path), a.id)
    d = take(store, 5, term=3)  # a higher term outranks a higher index
    assert [m.id for m in store.list()] == [d.id, c.id]


def test_same_point_twice_gets_distinct_ids(tmp_path):
    store = SnapshotStore(str(tmp_path), retain=5)
    ids = {take(store, 7).id for _ in range(4)}
    assert len(ids) == 4


def test_cancel_leaves_nothing(tmp_path):
    store = SnapshotStore(str(tmp_path))
    w = store.create(SnapshotMeta(3, 1, CONF, 1))
    w.write(b"partial")
    w.cancel()
    assert os.listdir(str(tmp_path)) == []
    with pytest.raises(RuntimeError):
        with store.create(SnapshotMeta(3, 1, CONF, 1)) as w2:
            w2.write(b"x")
            raise RuntimeError("boom")
    assert os.listdir(str(tmp_path)) == []


def test_temporary_leftovers_removed_at_startup(tmp_path):
    store = SnapshotStore(str(tmp_path))
    good = take(store, 10)
    w = store.create(SnapshotMeta(11, 2, CONF, 1))
    w.write(b"half")  # process dies here
    rec = Recorder()
    store2 = SnapshotStore(str(tmp_path), log=rec)
    [warn] = rec.find("WARN", "found temporary snapshot")
    assert warn["name"] == w.id + ".tmp"
    assert sorted(os.listdir(str(tmp_path))) == [good.id]
    assert [m.id for m in store2.list()] == [good.id]


def test_corrupt_newest_is_skipped_with_warn(tmp_path):
    rec = Recorder()
    store = SnapshotStore(str(tmp_path), log=rec)
    old = take(store, 10, chunks=[b"old state"])
    new = take(store, 20, chunks=[b"new state"])
    with open(os.path.join(str(tmp_path), new.id, "state.bin"), "r+b") as f:
        f.write(b"N3W")
    with pytest.raises(SnapshotCorruptError, match="CRC"):
        store.open(new.id)
    meta, f = store.latest_valid()
    with f:
        assert meta == old and f.read() == b"old state"
    warns = rec.find("WARN", "failed to open snapshot")
    assert warns and warns[-1]["id"] == new.id and "CRC" in warns[-1]["error"]


@pytest.mark.parametrize("damage", ["short-data", "no-data", "no-meta", "bad-meta", "wrong-version"])
def test_half_written_newest_falls_back(tmp_path, damage):
    rec = Recorder()
    store = SnapshotStore(str(tmp_path), log=rec)
    old = take(store, 10, chunks=[b"old"])
    new = take(store, 20, chunks=[b"newer state"])
    d = os.path.join(str(tmp_path), new.id)
    if damage == "short-data":
        with open(os.path.join(d, "state.bin"), "r+b") as f:
            f.truncate(3)
    elif damage == "no-data":
        os.unlink(os.path.join(d, "state.bin"))
    elif damage == "no-meta":
        os.unlink(os.path.join(d, "meta.json"))
    elif damage == "bad-meta":
        with open(os.path.join(d, "meta.json"), "w") as f:
            f.write('{"index": ')
    else:
        doc = json.load(open(os.path.join(d, "meta.json")))
        doc["version"] = 99
        json.dump(doc, open(os.path.join(d, "meta.json"), "w"))
    meta, f = store.latest_valid()
    f.close()
    assert meta == old
    assert rec.find("WARN", "failed to open snapshot") or rec.find("WARN", "failed to read metadata")


def test_no_valid_snapshot(tmp_path):
    store = SnapshotStore(str(tmp_path))
    assert store.latest_valid() is None
    s = take(store, 4)
    os.unlink(os.path.join(str(tmp_path), s.id, "state.bin"))
    assert store.latest_valid() is None
    with pytest.raises(SnapshotCorruptError):
        store.open("../etc")


def test_streamed_large_snapshot(tmp_path):
    store = SnapshotStore(str(tmp_path))
    w = store.create(SnapshotMeta(100, 4, CONF, 1))
    chunk = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(8):
        w.write(chunk)
    meta = w.close()
    assert meta.size == 8 * len(chunk)
    _, f = store.open(meta.id)
    with f:
        n = 0
        while block := f.read(65536):
            n += len(block)
    assert n == meta.size


# ------------------------------------------------------------------ open_newest: what a starting node reads

def _tree(path):
    out = {}
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def test_open_newest_verifies_and_opens_the_newest(tmp_path):
    store = SnapshotStore(str(tmp_path))
    assert store.open_newest() is None
    take(store, 10, chunks=[b"old"])
    new = take(store, 20, chunks=[b"new ", b"state"])
    meta, f = store.open_newest()
    with f:
        assert meta == new and f.read() == b"new state"


@pytest.mark.parametrize("damage", ["short-data", "long-data", "flipped", "no-data", "no-meta", "bad-meta"])
def test_open_newest_refuses_a_damaged_newest_without_falling_back(tmp_path, damage):
    rec = Recorder()
    store = SnapshotStore(str(tmp_path), log=rec)
    take(store, 10, chunks=[b"old"])
    new = take(store, 20, chunks=[b"newer state"])
    d = os.path.join(str(tmp_path), new.id)
    state, meta_file = os.path.join(d, "state.bin"), os.path.join(d, "meta.json")
    if damage == "short-data":
        with open(state, "r+b") as f:
            f.truncate(3)
    elif damage == "long-data":
        with open(state, "ab") as f:
            f.write(b"more")
    elif damage == "flipped":
        with open(state, "r+b") as f:
            f.write(b"N")
    elif damage == "no-data":
        os.unlink(state)
    elif damage == "no-meta":
        os.unlink(meta_file)
    else:
        with open(meta_file, "w") as f:
            f.write('{"index": ')
    before = _tree(str(tmp_path))
    with pytest.raises(StorageCorruptError) as caught:
        store.open_newest()
    err = caught.value
    expect = {"short-data": (state, 3, "the newest snapshot's data is 3 bytes, meta.json says 11"),
              "long-data": (state, 11, "the newest snapshot's data is 15 bytes, meta.json says 11"),
              "flipped": (state, 0, "the newest snapshot's CRC checksum failed over the whole file"),
              "no-data": (state, 0, "the newest snapshot's data cannot be opened: No such file or directory"),
              "no-meta": (meta_file, 0, "the newest snapshot's metadata is unreadable"),
              "bad-meta": (meta_file, 0, "the newest snapshot's metadata is unreadable: bad metadata")}[damage]
    assert (err.path, err.offset) == expect[:2] and err.problem.startswith(expect[2])
    assert str(err).endswith(RECOVERY)
    assert _tree(str(tmp_path)) == before
    # the one ERROR line is the caller's
    assert not [r for r in rec.records if r[0] == "ERROR"]


def test_an_unfinished_snapshot_is_not_the_newest(tmp_path):
    store = SnapshotStore(str(tmp_path))
    good = take(store, 10)
    w = store.create(SnapshotMeta(30, 3, CONF, 1))
    w.write(b"half")  # the process dies here: no meta.json, never renamed
    rec = Recorder()
    store2 = SnapshotStore(str(tmp_path), log=rec, remove_leftovers=False)
    assert os.path.isdir(w.path) and not rec.records
    meta, f = store2.open_newest()
    f.close()
    assert meta == good
    store2.remove_leftovers()
    [warn] = rec.find("WARN", "found temporary snapshot")
    assert warn["name"] == w.id + ".tmp" and sorted(os.listdir(str(tmp_path))) == [good.id]


def test_a_damaged_older_snapshot_does_not_matter(tmp_path):
    store = SnapshotStore(str(tmp_path))
    old = take(store, 10)
    new = take(store, 20)
    with open(os.path.join(str(tmp_path), old.id, "meta.json"), "w") as f:
        f.write("{not json")
    meta, f = store.open_newest()
    f.close()
    assert meta == new
