"""KVStore: commands, malformed input, snapshot and restore."""

from __future__ import annotations

import io

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.statemachine.commands import CommandError, encode_delete, encode_set, encode_set_many
from raftkv.statemachine.kvstore import KVStore, SnapshotFormatError
from raftkv.raft.messages import SnapshotMeta
from raftkv.storage.snapshot_store import SnapshotStore


class Recorder:
    def __init__(self):
        self.records = []

    def __call__(self, level, message, fields):
        self.records.append((level, message, dict(fields)))


class CountingWriter:
    def __init__(self):
        self.buf = io.BytesIO()
        self.calls = 0

    def write(self, data):
        self.calls += 1
        return self.buf.write(data)


def test_set_get_delete_set_many():
    kv = KVStore()
    assert kv.apply(1, encode_set("a", "1")) is None
    assert kv.get("a") == "1" and len(kv) == 1 and "a" in kv
    assert kv.apply(2, encode_set("a", "2")) is None
    assert kv.get("a") == "2"
    assert kv.apply(3, encode_delete("a")) is True
    assert kv.apply(4, encode_delete("a")) is False
    assert kv.get("a") is None
    assert kv.apply(5, encode_set_many({"x": "1", "y": "2", "": "empty", "ключ": "値"})) == 4
    assert kv.get("ключ") == "値" and kv.get("") == "empty"
    assert kv.applied_index == 5
    assert len(kv) == 4


def test_encoders_reject_non_strings():
    with pytest.raises(TypeError):
        encode_set("a", 1)
    with pytest.raises(TypeError):
        encode_set(b"a", "1")
    with pytest.raises(TypeError):
        encode_delete(None)
    with pytest.raises(TypeError):
        encode_set_many({"a": "1", "b": 2})


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",                                              # never-used msgpack byte
    b"\x92\xa3set",                                       # truncated array
    msgpack.packb("set"),                                 # not an array
    msgpack.packb([]),
    msgpack.packb(["set", "k"]),                          # missing value
    msgpack.packb(["set", "k", 1]),                       # value not a str
    msgpack.packb(["set", b"k", "v"], use_bin_type=True),  # key is bytes
    msgpack.packb(["del", 5]),
    msgpack.packb(["setm", ["a", "b"]]),
    msgpack.packb(["setm", {"a": "1", "b": 2}]),          # one bad value: nothing written
    msgpack.packb(["drop-table"]),
    msgpack.packb([None, "k", "v"]),
    msgpack.packb({"op": "set"}),
])
def test_malformed_command_returns_error_and_changes_nothing(data):
    rec = Recorder()
    kv = KVStore(log=rec)
    kv.apply(1, encode_set("keep", "me"))
    result = kv.apply(2, data)
    assert isinstance(result, CommandError)
    assert kv.get("keep") == "me" and len(kv) == 1
    assert kv.get("a") is None
    assert kv.applied_index == 2  # a committed entry is applied even if it is rejected
    assert any(lv == "WARN" for lv, _m, _f in rec.records)
    assert kv.apply(3, encode_set("after", "ok")) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise(data):
    kv = KVStore()
    kv.apply(1, encode_set("keep", "me"))
    result = kv.apply(2, data)
    assert result is None or isinstance(result, (bool, int, CommandError))
    assert kv.get("keep") in ("me", None)  # only a valid "del keep" could remove it
    assert all(isinstance(k, str) and isinstance(kv.get(k), str) for k, _v in kv.items())


def test_already_applied_indexes_are_ignored():
    kv = KVStore()
    kv.apply(5, encode_set("a", "1"))
    assert kv.apply(5, encode_delete("a")) is None
    assert kv.apply(3, encode_delete("a")) is None
    assert kv.get("a") == "1"
    kv.mark_applied(9)
    assert kv.applied_index == 9
    kv.mark_applied(4)
    assert kv.applied_index == 9


def test_snapshot_restore_round_trip_100k_keys():
    kv = KVStore()
    n = 100_000
    kv.apply(1, encode_set_many({"key-%06d" % i: "value-%d" % (i * 7) for i in range(n)}))
    kv.apply(2, encode_set("unicode-ключ", "値 ☃"))
    persist = kv.snapshot()
    # writes after the capture must not leak into the snapshot
    kv.apply(3, encode_set("late", "x"))
    kv.apply(4, encode_delete("key-000000"))
    w = CountingWriter()
    written = persist(w)
    assert written == len(w.buf.getvalue())
    assert w.calls >= 1 + n // 10_000  # header + ~10k-pair batches, streamed
    fresh = KVStore()
    fresh.apply(1, encode_set("stale", "gone"))
    w.buf.seek(0)
    fresh.restore(w.buf)
    assert fresh.applied_index == 2
    assert len(fresh) == n + 1
    assert fresh.get("stale") is None and fresh.get("late") is None
    assert fresh.get("key-000000") == "value-0"
    assert fresh.get("key-099999") == "value-699993"
    assert fresh.get("unicode-ключ") == "値 ☃"
    # replaying the log after the snapshot continues where it left off
    assert fresh.apply(2, encode_set("dup", "no")) is None and fresh.get("dup") is None
    assert fresh.apply(3, encode_set("late", "x")) is None and fresh.get("late") == "x"


def test_snapshot_of_empty_store():
    kv = KVStore()
    w = CountingWriter()
    kv.snapshot()(w)
    other = KVStore()
    other.apply(7, encode_set("a", "b"))
    w.buf.seek(0)
    other.restore(w.buf)
    assert len(other) == 0 and other.applied_index == 0


def test_large_values_are_batched_by_size():
    kv = KVStore()
    big = "v" * (1024 * 1024)
    kv.apply(1, encode_set_many({"k%d" % i: big for i in range(10)}))
    w = CountingWriter()
    kv.snapshot()(w)
    assert w.calls >= 3  # not one 10 MiB batch
    w.buf.seek(0)
    other = KVStore()
    other.restore(w.buf)
    assert other.get("k9") == big


@pytest.mark.parametrize("cut", ["empty", "header-only-garbage", "truncated", "wrong-format", "bad-batch"])
def test_bad_snapshot_leaves_state_untouched(cut):
    kv = KVStore()
    kv.apply(1, encode_set_many({"k%d" % i: "v" for i in range(50_000)}))
    w = CountingWriter()
    kv.snapshot()(w)
    blob = w.buf.getvalue()
    if cut == "empty":
        blob = b""
    elif cut == "header-only-garbage":
        blob = b"\xc1\xc1\xc1"
    elif cut == "truncated":
        blob = blob[: len(blob) // 2]
    elif cut == "wrong-format":
        blob = msgpack.packb({"format": "other", "version": 1, "applied_index": 1, "count": 0})
    else:
        header = msgpack.packb({"format": "raftkv-kv", "version": 1, "applied_index": 1, "count": 1})
        blob = header + msgpack.packb({"a": 1})
    target = KVStore()
    target.apply(3, encode_set("mine", "1"))
    with pytest.raises(SnapshotFormatError):
        target.restore(io.BytesIO(blob))
    assert target.get("mine") == "1" and len(target) == 1 and target.applied_index == 3


def test_snapshot_through_snapshot_store(tmp_path):
    kv = KVStore()
    kv.apply(1, encode_set_many({"a": "1", "b": "2"}))
    store = SnapshotStore(str(tmp_path))
    writer = store.create(SnapshotMeta(1, 1))
    kv.snapshot()(writer)
    meta = writer.close()
    _, f = store.latest_valid()
    other = KVStore()
    with f:
        other.restore(f)
    assert other.get("b") == "2" and other.applied_index == 1 and meta.size > 0


def test_state_survives_reopening_the_file(tmp_path):
    path = str(tmp_path / "fsm.db")
    kv = KVStore(path)
    kv.apply(1, encode_set_many({"a": "1", "b": "2"}))
    kv.apply(2, encode_delete("a"))
    kv.mark_applied(3)
    kv.commit()
    kv.apply(4, encode_set("uncommitted", "x"))  # a crash before commit() loses only this
    kv._db.close()  # as a killed process leaves it: no commit, no close()
    again = KVStore(path)
    assert again.applied_index == 3 and len(again) == 1
    assert again.get("b") == "2" and again.get("a") is None and again.get("uncommitted") is None
    assert again.apply(2, encode_delete("b")) is None and again.get("b") == "2"  # already applied
    assert again.apply(4, encode_set("uncommitted", "x")) is None and again.get("uncommitted") == "x"


def test_a_file_from_before_a_machine_restart_is_discarded(tmp_path, monkeypatch):
    path = str(tmp_path / "fsm.db")
    kv = KVStore(path)
    kv.apply(1, encode_set("a", "1"))
    kv.close()
    monkeypatch.setattr("raftkv.statemachine.kvstore.boot_id", lambda: "another-boot")
    rec = Recorder()
    again = KVStore(path, log=rec)
    assert again.applied_index == 0 and len(again) == 0 and again.get("a") is None
    assert any(lv == "WARN" and "machine restart" in m for lv, m, _f in rec.records)


def test_an_unreadable_file_is_rebuilt(tmp_path):
    path = tmp_path / "fsm.db"
    path.write_bytes(b"this is not a database" * 100)
    rec = Recorder()
    kv = KVStore(str(path), log=rec)
    assert kv.applied_index == 0 and len(kv) == 0
    assert any(lv == "WARN" and "unreadable" in m for lv, m, _f in rec.records)
    kv.apply(1, encode_set("a", "1"))
    assert kv.get("a") == "1"


def test_key_count_stays_exact_through_overwrites_and_deletes():
    kv = KVStore()
    kv.apply(1, encode_set_many({"a": "1", "b": "2", "c": "3"}))
    kv.apply(2, encode_set("a", "again"))
    kv.apply(3, encode_set_many({"b": "x", "d": "4"}))
    assert kv.apply(4, encode_delete("c")) is True
    assert kv.apply(5, encode_delete("c")) is False
    assert len(kv) == 3 == len(list(kv.items()))
    assert list(kv.items()) == [("a", "again"), ("b", "x"), ("d", "4")]


def test_a_snapshot_streams_from_another_thread_while_writes_go_on():
    import threading
    kv = KVStore()
    kv.apply(1, encode_set_many({"k%05d" % i: "v" for i in range(20_000)}))
    persist = kv.snapshot()
    w = CountingWriter()
    t = threading.Thread(target=persist, args=(w,))
    t.start()
    for i in range(2, 200):
        kv.apply(i, encode_set("late%d" % i, "x"))
        kv.commit()
    t.join()
    other = KVStore()
    w.buf.seek(0)
    other.restore(w.buf)
    assert other.applied_index == 1 and len(other) == 20_000 and other.get("late5") is None


def test_adopt_takes_a_backup_but_keeps_this_clusters_reserved_keys():
    kv = KVStore()
    kv.apply(1, encode_set_many({"\x00raftkv/http/n1": "mine:1", "old": "x", "\x00raftkx": "y"}))
    backup = KVStore()
    backup.apply(7, encode_set_many({"\x00raftkv/http/n9": "theirs:9", "new": "1", "\x00raftkv0": "z"}))
    kv.adopt(backup, 42, keep_prefix="\x00raftkv/")
    assert kv.applied_index == 42
    assert dict(kv.items()) == {"\x00raftkv/http/n1": "mine:1", "new": "1", "\x00raftkv0": "z"}
    assert len(kv) == 3
    kv.apply(43, encode_set("after", "1"))
    assert kv.get("after") == "1"


def test_reads_see_each_commit_and_a_restore_done_on_another_thread():
    import threading
    kv = KVStore()
    kv.apply(1, encode_set("a", "1"))
    kv.commit()
    assert kv.get("a") == "1"  # the read view is now open
    kv.apply(2, encode_set("a", "2"))
    kv.commit()
    assert kv.get("a") == "2"
    source = KVStore()
    source.apply(9, encode_set("a", "restored"))
    w = CountingWriter()
    source.snapshot()(w)
    w.buf.seek(0)
    t = threading.Thread(target=kv.restore, args=(w.buf,))
    t.start()
    t.join()
    assert kv.applied_index == 9 and kv.get("a") == "restored"


def test_reset_forgets_everything():
    kv = KVStore()
    kv.apply(5, encode_set_many({"a": "1", "b": "2"}))
    kv.commit()
    assert kv.get("a") == "1"
    kv.reset()
    assert kv.applied_index == 0 and len(kv) == 0 and kv.get("a") is None
    assert kv.apply(1, encode_set("a", "new")) is None and kv.get("a") == "new"


def test_a_read_view_remembers_values_only_until_the_state_changes(tmp_path):
    """Reads keep the values they looked up for as long as their view is
    current; every change (a commit, a restore, a reset) starts afresh, in
    the store and in a worker's read-only view of its file."""
    from raftkv.statemachine.kvstore import KVReader
    from raftkv.statemachine.memo import MEMO_VALUE_CHARS
    kv = KVStore(str(tmp_path / "fsm.db"))
    kv.apply(1, encode_set_many({"a": "1", "big": "x" * (MEMO_VALUE_CHARS + 1)}))
    kv.commit()
    reader = KVReader(kv.path)
    for _ in range(2):
        assert (kv.get("a"), kv.get("missing"), kv.get("big")) == ("1", None, "x" * (MEMO_VALUE_CHARS + 1))
        assert (reader.get("a"), reader.get("missing")) == ("1", None)
    kv.apply(2, encode_set_many({"a": "2", "missing": "now"}))
    assert kv.get("a") == "2"  # read inside the applies' transaction
    kv.commit()
    assert (kv.get("a"), kv.get("missing")) == ("2", "now")
    assert reader.get("a") == "1"  # a view is one transaction: unchanged until renewed
    assert reader.renew() == 2 and (reader.get("a"), reader.get("missing")) == ("2", "now")
    kv.apply(3, encode_delete("a"))
    kv.commit()
    assert kv.get("a") is None
    kv.reset()
    assert kv.get("missing") is None and kv.get("big") is None
    assert reader.renew() == 0 and reader.get("missing") is None
    reader.close()
    kv.close()


def test_changed_index_moves_with_keys_not_with_entries_that_change_none():
    """``changed_index``: where the keys last changed, what a reader whose
    view reached it may take for the state at ``applied_index``."""
    kv = KVStore()
    kv.apply(1, encode_set("a", "1"))
    assert kv.changed_index == 1             # from the apply on, before the commit
    kv.commit()
    assert kv.get("a") == "1"
    kv.mark_applied(2)                       # a no-op, a configuration change
    kv.mark_applied(3)
    kv.commit()
    assert (kv.applied_index, kv.changed_index) == (3, 1)
    assert kv.get("a") == "1"
    kv.apply(4, encode_delete("missing"))    # a delete of nothing still counts: cheaper than asking
    kv.commit()
    assert kv.changed_index == 4
    kv.apply(5, b"garbage")                  # a rejected command changes nothing
    kv.commit()
    assert (kv.applied_index, kv.changed_index) == (5, 4)
    source = KVStore()
    source.apply(9, encode_set("a", "restored"))
    w = CountingWriter()
    source.snapshot()(w)
    w.buf.seek(0)
    kv.restore(w.buf)
    assert (kv.applied_index, kv.changed_index) == (9, 9) and kv.get("a") == "restored"
