"""LogStore: append/get/truncate/compact/reopen, crash recovery (torn tails cut,
corruption refused), and a model test."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raftkv.raft.messages import Entry, EntryType
from raftkv.storage import RECOVERY, StorageCorruptError
from raftkv.storage import log_store as log_store_mod
from raftkv.storage.log_store import LogStore


class Recorder:
    def __init__(self):
        self.records = []

    def __call__(self, level, message, fields):
        self.records.append((level, message, dict(fields)))

    def find(self, level, message):
        return [f for lv, m, f in self.records if lv == level and m == message]


def mk(lo, hi, term=1, size=8):
    return [Entry(i, term, EntryType.COMMAND, (b"%d:" % i) + b"x" * size) for i in range(lo, hi + 1)]


def seg_files(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def test_empty_store(tmp_path):
    s = LogStore(str(tmp_path))
    assert (s.first_index(), s.last_index()) == (0, 0)
    assert s.get(1) is None
    assert s.entries(1, 10) == []
    s.close()


def test_append_get_entries_and_reopen(tmp_path):
    s = LogStore(str(tmp_path))
    batch = mk(1, 100)
    batch[5] = Entry(6, 1, EntryType.NOOP, b"")
    batch[6] = Entry(7, 2, EntryType.CONFIGURATION, b'[["n1","127.0.0.1:9000","Voter"]]')
    s.append(batch)
    s.sync()
    assert (s.first_index(), s.last_index()) == (1, 100)
    assert s.get(6) == batch[5]
    assert s.get(7) == batch[6]
    assert s.get(0) is None and s.get(101) is None
    assert s.entries(1, 100) == batch
    assert s.entries(0, 1000) == batch  # clamped
    assert s.entries(50, 40) == []
    s.close()
    s = LogStore(str(tmp_path))
    assert (s.first_index(), s.last_index()) == (1, 100)
    assert s.entries(1, 100) == batch
    assert s.get(7).type is EntryType.CONFIGURATION
    s.close()


def test_append_must_be_contiguous(tmp_path):
    s = LogStore(str(tmp_path))
    with pytest.raises(ValueError):
        s.append([Entry(0, 1)])
    s.append(mk(1, 3))
    with pytest.raises(ValueError):
        s.append(mk(5, 6))
    with pytest.raises(ValueError):
        s.append(mk(3, 4))
    with pytest.raises(ValueError):
        s.append([Entry(4, 1), Entry(6, 1)])
    assert s.last_index() == 3
    s.append(mk(4, 4))
    assert s.last_index() == 4
    s.close()


def test_empty_store_accepts_any_start_index(tmp_path):
    s = LogStore(str(tmp_path))
    s.append(mk(501, 510))
    assert (s.first_index(), s.last_index()) == (501, 510)
    assert seg_files(str(tmp_path)) == ["00000000000000000501.seg"]
    s.close()
    s = LogStore(str(tmp_path))
    assert (s.first_index(), s.last_index()) == (501, 510)
    assert s.get(500) is None and s.get(505).index == 505
    s.close()


@pytest.mark.parametrize("cache", [0, 4096])
def test_truncate_from(tmp_path, cache):
    s = LogStore(str(tmp_path), segment_size=300, cache_entries=cache)
    s.append(mk(1, 10))
    for i in range(11, 41, 5):  # a segment rolls between batches, never inside one
        s.append(mk(i, i + 4, term=2))
    assert len(seg_files(str(tmp_path))) >= 3
    s.truncate_from(41)  # beyond the end: nothing
    assert s.last_index() == 40
    s.truncate_from(25)
    assert s.last_index() == 24
    assert s.get(25) is None
    assert s.entries(1, 100) == mk(1, 10) + mk(11, 24, term=2)
    s.append(mk(25, 30, term=3))
    assert s.entries(20, 30) == mk(20, 24, term=2) + mk(25, 30, term=3)
    s.close()
    s = LogStore(str(tmp_path), segment_size=300, cache_entries=cache)
    assert s.entries(1, 100) == mk(1, 10) + mk(11, 24, term=2) + mk(25, 30, term=3)
    s.truncate_from(1)
    assert (s.first_index(), s.last_index()) == (0, 0)
    assert seg_files(str(tmp_path)) == []
    s.close()


def test_truncate_is_fsynced(tmp_path, monkeypatch):
    s = LogStore(str(tmp_path))
    s.append(mk(1, 10))
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    s.truncate_from(5)
    assert calls, "truncate_from must fsync before returning"
    s.close()


def test_compaction_returns_disk_space(tmp_path):
    path = str(tmp_path)
    s = LogStore(path, segment_size=1000)
    for lo in range(1, 1001, 10):
        s.append(mk(lo, lo + 9, size=40))
    s.sync()
    files_before = seg_files(path)
    bytes_before = sum(os.path.getsize(os.path.join(path, n)) for n in files_before)
    assert len(files_before) > 20
    s.compact_through(900)
    files_after = seg_files(path)
    bytes_after = sum(os.path.getsize(os.path.join(path, n)) for n in files_after)
    assert s.first_index() == 901 and s.last_index() == 1000
    assert len(files_after) < len(files_before) // 5
    assert bytes_after < bytes_before // 5
    assert all(int(n[:-4]) > 850 for n in files_after)
    assert s.get(900) is None
    assert s.entries(0, 2000) == mk(901, 1000, size=40)
    s.close()
    s = LogStore(path, segment_size=1000)
    assert (s.first_index(), s.last_index()) == (901, 1000)
    assert s.get(900) is None
    assert s.entries(1, 2000) == mk(901, 1000, size=40)
    s.close()


def test_compaction_of_active_segment_rolls_it(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)  # 64 MiB segments: everything lands in one file
    s.append(mk(1, 100))
    s.compact_through(50)
    assert seg_files(path) == ["00000000000000000001.seg"]
    s.append(mk(101, 150))
    assert seg_files(path) == ["00000000000000000001.seg", "00000000000000000101.seg"]
    s.compact_through(120)
    assert seg_files(path) == ["00000000000000000101.seg"]
    assert s.entries(1, 200) == mk(121, 150)
    s.close()
    s = LogStore(path)
    assert (s.first_index(), s.last_index()) == (121, 150)
    s.close()


def test_compact_everything_then_restart_at_any_index(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 100))
    s.compact_through(100)
    assert (s.first_index(), s.last_index()) == (0, 0)
    assert seg_files(path) == []
    s.close()
    s = LogStore(path)
    assert (s.first_index(), s.last_index()) == (0, 0)
    # below the old floor (a snapshot installed at an older point) must stay visible
    s.append(mk(40, 45))
    s.close()
    s = LogStore(path)
    assert (s.first_index(), s.last_index()) == (40, 45)
    s.compact_through(1000)  # past the end: everything goes
    s.append(mk(2001, 2002))
    s.close()
    s = LogStore(path)
    assert (s.first_index(), s.last_index()) == (2001, 2002)
    s.close()


def test_interrupted_compaction_is_finished_on_open(tmp_path):
    path = str(tmp_path)
    s = LogStore(path, segment_size=200)
    for i in range(1, 41, 4):
        s.append(mk(i, i + 3))
    s.close()
    files = seg_files(path)
    assert len(files) > 3
    keep = {n: open(os.path.join(path, n), "rb").read() for n in files}
    s = LogStore(path, segment_size=200)
    s.compact_through(30)
    s.close()
    # crash after the floor was written but before any file was unlinked
    for n, data in keep.items():
        with open(os.path.join(path, n), "wb") as f:
            f.write(data)
    s = LogStore(path, segment_size=200)
    assert (s.first_index(), s.last_index()) == (31, 40)
    assert s.get(30) is None
    remaining = seg_files(path)
    assert len(remaining) < len(files)
    assert min(int(n[:-4]) for n in remaining) <= 31
    s.close()


def test_reset(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 10))
    s.compact_through(5)
    s.reset()
    assert (s.first_index(), s.last_index()) == (0, 0)
    assert os.listdir(path) == []
    s.append(mk(1, 2))
    s.close()
    s = LogStore(path)
    assert s.entries(1, 10) == mk(1, 2)
    s.close()


def test_batch_append_is_one_write_and_sync_is_one_fdatasync(tmp_path, monkeypatch):
    s = LogStore(str(tmp_path))
    s.append(mk(1, 1))
    s.sync()
    writes, syncs = [], []
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, off: (writes.append(len(data)), real_pwrite(fd, data, off))[1])
    monkeypatch.setattr(log_store_mod, "_fdatasync", lambda fd: syncs.append(fd))
    s.append(mk(2, 65))
    assert len(writes) == 1
    s.sync()
    assert len(syncs) == 1
    s.sync()  # nothing new: no fsync at all
    assert len(syncs) == 1
    s.close()


# ------------------------------------------------------------------ crash recovery

def _last_seg(path):
    return os.path.join(path, seg_files(path)[-1])


@pytest.mark.parametrize("cut", [1, 3, 8, 9, 20])
def test_torn_tail_short_record(tmp_path, cut):
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 20))
    s.close()
    seg = _last_seg(path)
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.truncate(size - cut)
    rec = Recorder()
    s = LogStore(path, log=rec)
    assert (s.first_index(), s.last_index()) == (1, 19)
    assert s.entries(1, 19) == mk(1, 19)
    warns = rec.find("WARN", "log store: truncated torn tail")
    assert len(warns) == 1
    assert warns[0]["segment"] == os.path.basename(seg)
    assert warns[0]["offset"] + warns[0]["dropped-bytes"] == size - cut
    assert os.path.getsize(seg) == warns[0]["offset"]
    # the store keeps working after recovery
    s.append(mk(20, 25, term=2))
    s.close()
    s = LogStore(path)
    assert s.entries(1, 30) == mk(1, 19) + mk(20, 25, term=2)
    s.close()


def _files(path):
    """Every file under ``path`` with its bytes: what a refusal must leave alone."""
    out = {}
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def _flip(path, offset, count=1):
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def _refused(path, **opts):
    """Open ``path``, which must be refused; returns the error after checking
    that nothing on disk changed."""
    before = _files(path)
    rec = Recorder()
    with pytest.raises(StorageCorruptError) as caught:
        LogStore(path, log=rec, **opts)
    assert _files(path) == before
    assert not rec.find("WARN", "log store: truncated torn tail")
    err = caught.value
    assert str(err).startswith(f"{err.path} is corrupt at offset {err.offset}: ")
    assert str(err).endswith(RECOVERY)
    return err


def test_flipped_bytes_in_the_last_record_are_a_torn_tail(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 20))
    offsets = list(s._segments[-1].offsets)
    s.close()
    _flip(_last_seg(path), offsets[19] + 12)
    rec = Recorder()
    s = LogStore(path, log=rec)
    assert s.entries(1, 20) == mk(1, 19)
    [w] = rec.find("WARN", "log store: truncated torn tail")
    assert (w["offset"], w["error"]) == (offsets[19], "checksum mismatch")
    s.close()


@pytest.mark.parametrize("where", ["payload", "length", "checksum"])
def test_flipped_bytes_before_intact_records_are_refused(tmp_path, where):
    # (This used to truncate at the bad record as if it were a torn tail,
    # dropping the eight intact records after it.)
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 20))
    offsets = list(s._segments[-1].offsets)
    s.close()
    seg = _last_seg(path)
    _flip(seg, offsets[12] + {"payload": 12, "length": 1, "checksum": 5}[where])
    err = _refused(path)
    assert (err.path, err.offset) == (seg, offsets[12])
    assert "and an intact record follows at offset" in err.problem


def test_eight_bytes_flipped_in_the_middle_of_a_big_segment_are_refused(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)
    for lo in range(1, 20001, 500):
        s.append(mk(lo, lo + 499, size=150))
    offsets = list(s._segments[-1].offsets)
    s.close()
    seg = _last_seg(path)
    size = os.path.getsize(seg)
    assert size > 3_000_000
    middle = size // 2
    _flip(seg, middle, 8)
    err = _refused(path)
    bad = max(o for o in offsets if o <= middle)
    assert (err.path, err.offset) == (seg, bad)
    assert "checksum mismatch, and an intact record follows at offset" in err.problem


def test_a_damaged_earlier_segment_is_refused(tmp_path):
    # (This used to cut the damaged segment and discard every later one.)
    path = str(tmp_path)
    s = LogStore(path, segment_size=200)
    s.append(mk(1, 10))
    for i in range(11, 41):
        s.append(mk(i, i))
    s.close()
    files = seg_files(path)
    assert len(files) >= 4
    victim = os.path.join(path, files[1])
    _flip(victim, 9, 3)
    err = _refused(path, segment_size=200)
    assert (err.path, err.offset) == (victim, 0)
    assert err.problem == "checksum mismatch, in a segment that later segments follow"


def test_a_torn_end_of_an_earlier_segment_is_refused(tmp_path):
    # a later segment is created only once the earlier one is durable, so
    # its end cannot be torn by a crash
    path = str(tmp_path)
    s = LogStore(path, segment_size=200)
    for i in range(1, 41):
        s.append(mk(i, i))
    s.close()
    files = seg_files(path)
    victim = os.path.join(path, files[0])
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:
        f.truncate(size - 3)
    err = _refused(path, segment_size=200)
    assert err.path == victim and err.problem.startswith("short record")


def test_an_empty_earlier_segment_is_refused(tmp_path):
    path = str(tmp_path)
    s = LogStore(path, segment_size=200)
    for i in range(1, 41):
        s.append(mk(i, i))
    s.close()
    victim = os.path.join(path, seg_files(path)[1])
    open(victim, "wb").close()
    err = _refused(path, segment_size=200)
    assert (err.path, err.offset) == (victim, 0)
    assert "empty segment" in err.problem


def test_a_gap_between_segments_is_refused(tmp_path):
    # (This used to keep the segments before the gap and discard the rest.)
    path = str(tmp_path)
    s = LogStore(path, segment_size=100)
    for i in range(1, 21):
        s.append(mk(i, i))
    s.close()
    files = seg_files(path)
    os.unlink(os.path.join(path, files[2]))
    err = _refused(path, segment_size=100)
    missing_from, after = int(files[2][:-4]), int(files[3][:-4])
    assert (err.path, err.offset) == (os.path.join(path, files[3]), 0)
    assert err.problem == (f"segment starts at index {after}, but the one before it ends at index "
                           f"{missing_from - 1}: entries {missing_from}..{after - 1} are missing")


def test_a_log_shorter_than_what_was_durable_is_refused(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 20))
    last_record = s._segments[-1].offsets[-1]
    s.close()
    seg = _last_seg(path)
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:  # looks like a torn tail, but entry 20 was durable
        f.truncate(size - 3)
    err = _refused(path, durable_through=20)
    assert (err.path, err.offset) == (seg, last_record)
    assert err.problem == ("the log ends at index 19, but index 20 was durable here and no snapshot "
                           "holds it (the last record is damaged: short record)")
    # had entry 19 been the last durable one, the same tail would only be torn
    rec = Recorder()
    s = LogStore(path, log=rec, durable_through=19)
    assert s.last_index() == 19 and rec.find("WARN", "log store: truncated torn tail")
    s.close()


def test_an_empty_log_below_what_was_durable_is_refused(tmp_path):
    path = str(tmp_path)
    err = _refused(path, durable_through=5)
    assert (err.path, err.offset) == (path, 0)
    assert err.problem.startswith("the log ends at index 0, but index 5 was durable here")


def test_a_record_with_a_good_checksum_and_a_wrong_index_is_refused(tmp_path):
    # (This used to be cut as a torn tail.) A crash cannot write a record
    # whose checksum holds; the name says 5, the records say 1..3.
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 3))
    s.close()
    os.rename(os.path.join(path, "00000000000000000001.seg"), os.path.join(path, "00000000000000000005.seg"))
    err = _refused(path)
    assert err.offset == 0 and err.problem == "unexpected index 1, expected 5"


def test_zeros_after_the_last_record_are_a_torn_tail(tmp_path):
    path = str(tmp_path)
    s = LogStore(path)
    s.append(mk(1, 5))
    s.close()
    seg = _last_seg(path)
    size = os.path.getsize(seg)
    with open(seg, "ab") as f:  # space the file system allocated, never written
        f.write(bytes(4096))
    rec = Recorder()
    s = LogStore(path, log=rec)
    assert s.entries(1, 10) == mk(1, 5)
    [w] = rec.find("WARN", "log store: truncated torn tail")
    assert (w["offset"], w["dropped-bytes"]) == (size, 4096)
    s.close()


def test_a_new_segment_starts_only_once_the_previous_one_is_durable(tmp_path, monkeypatch):
    path = str(tmp_path)
    s = LogStore(path, segment_size=200)
    s.append(mk(1, 10))
    synced = []
    monkeypatch.setattr(log_store_mod, "_fdatasync", lambda fd: synced.append((fd, seg_files(path))))
    first = s._segments[-1]
    s.append(mk(11, 11))  # the first segment is full: a new one starts
    assert len(s._segments) == 2
    assert synced == [(first.fd, [first.name])]
    s.close()


def test_compacted_leftovers_are_not_checked(tmp_path):
    path = str(tmp_path)
    s = LogStore(path, segment_size=200)
    for i in range(1, 41, 4):
        s.append(mk(i, i + 3))
    s.close()
    files = seg_files(path)
    keep = {n: _files(path)[n] for n in files[:2]}
    s = LogStore(path, segment_size=200)
    s.compact_through(int(files[2][:-4]))
    s.close()
    # a crash before the unlinks, and damage in what they would have removed
    for n, data in keep.items():
        with open(os.path.join(path, n), "wb") as f:
            f.write(data)
    _flip(os.path.join(path, files[0]), 10, 4)
    s = LogStore(path, segment_size=200)
    assert s.first_index() == int(files[2][:-4]) + 1 and s.last_index() == 40
    assert seg_files(path) == files[2:]
    s.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300), name=st.sampled_from(["00000000000000000001.seg",
                                                              "00000000000000000007.seg", "first_index"]),
       keep_valid=st.booleans())
def test_garbage_never_crashes(tmp_path_factory, garbage, name, keep_valid):
    """Garbage opens as a valid prefix or is refused as corruption without a
    file changed; nothing else is ever raised."""
    path = str(tmp_path_factory.mktemp("garbage"))
    if keep_valid:
        s = LogStore(path)
        s.append(mk(1, 5))
        s.close()
    target = os.path.join(path, name)
    mode = "ab" if (keep_valid and os.path.exists(target)) else "wb"
    with open(target, mode) as f:
        f.write(garbage)
    before = _files(path)
    rec = Recorder()
    try:
        s = LogStore(path, log=rec)
    except StorageCorruptError:
        assert _files(path) == before
        # a segment after the intact one is a gap, never a torn tail
        assert keep_valid and name == "00000000000000000007.seg"
        shutil.rmtree(path)
        return
    first, last = s.first_index(), s.last_index()
    assert (first == 0) == (last == 0)
    got = s.entries(first, last)
    assert [e.index for e in got] == list(range(first, last + 1)) if last else got == []
    s.append(mk(last + 1, last + 2) if last else mk(1, 2))
    s.close()
    s = LogStore(path)
    assert s.last_index() == (last + 2 if last else 2)
    s.close()
    shutil.rmtree(path)


# ------------------------------------------------------------------ model-based test

class LogStoreMachine(RuleBasedStateMachine):
    """Compare the store against a plain list, across reopen and compaction."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="logstore-")
        self.model: list[Entry] = []
        self.store = None
        self.opts = {}

    @initialize(segment_size=st.sampled_from([120, 600, 64 * 1024 * 1024]),
                cache=st.sampled_from([0, 3, 4096]))
    def open_store(self, segment_size, cache):
        self.opts = dict(segment_size=segment_size, cache_entries=cache)
        self.store = LogStore(self.dir, **self.opts)

    def next_index(self):
        return self.model[-1].index + 1 if self.model else 1

    @rule(n=st.integers(1, 12), term_bump=st.integers(0, 1), size=st.integers(0, 40))
    def append(self, n, term_bump, size):
        start = self.next_index()
        term = (self.model[-1].term if self.model else 1) + term_bump
        batch = [Entry(i, term, EntryType(i % 3), os.urandom(size)) for i in range(start, start + n)]
        self.store.append(batch)
        self.model.extend(batch)

    @precondition(lambda self: not self.model)
    @rule(start=st.integers(1, 500))
    def append_to_empty_anywhere(self, start):
        batch = [Entry(start, 3, EntryType.COMMAND, b"s")]
        self.store.append(batch)
        self.model.extend(batch)

    @rule(data=st.data())
    def truncate_from(self, data):
        lo = self.model[0].index if self.model else 1
        index = data.draw(st.integers(max(1, lo - 2), self.next_index() + 2))
        self.store.truncate_from(index)
        self.model = [e for e in self.model if e.index < index]

    @rule(data=st.data())
    def compact_through(self, data):
        lo = self.model[0].index if self.model else 1
        index = data.draw(st.integers(max(0, lo - 2), self.next_index() + 2))
        self.store.compact_through(index)
        self.model = [e for e in self.model if e.index > index]

    @rule()
    def sync(self):
        self.store.sync()

    @rule()
    def reopen(self):
        self.store.close()
        self.store = LogStore(self.dir, **self.opts)

    @rule()
    def reset(self):
        self.store.reset()
        self.model = []

    @rule(data=st.data())
    def read_range(self, data):
        if not self.model:
            return
        lo = data.draw(st.integers(self.model[0].index - 2, self.model[-1].index + 2))
        hi = data.draw(st.integers(lo - 1, self.model[-1].index + 2))
        expect = [e for e in self.model if lo <= e.index <= hi]
        assert self.store.entries(lo, hi) == expect
        assert self.store.get(lo) == next((e for e in self.model if e.index == lo), None)

    @invariant()
    def bounds_match(self):
        if self.store is None:
            return
        if self.model:
            assert self.store.first_index() == self.model[0].index
            assert self.store.last_index() == self.model[-1].index
            assert self.store.get(self.model[-1].index) == self.model[-1]
            assert self.store.get(self.model[0].index) == self.model[0]
        else:
            assert (self.store.first_index(), self.store.last_index()) == (0, 0)

    def teardown(self):
        if self.store is not None:
            self.store.close()
            reopened = LogStore(self.dir, **self.opts)
            assert reopened.entries(0, 10**9) == self.model
            reopened.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestLogStoreModel = LogStoreMachine.TestCase
TestLogStoreModel.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
