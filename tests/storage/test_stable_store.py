"""StableStore: durable term/vote with two checksummed alternating copies."""

from __future__ import annotations

import os

import pytest

from raftkv.storage import RECOVERY, StorageCorruptError
from raftkv.storage.stable_store import StableStore, StableStoreCorruptError


class Recorder:
    def __init__(self):
        self.records = []

    def __call__(self, level, message, fields):
        self.records.append((level, message, dict(fields)))


def _files(path):
    out = {}
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as f:
            out[name] = f.read()
    return out


def test_fresh_store_defaults(tmp_path):
    s = StableStore(str(tmp_path / "stable"))
    assert s.load() == {"term": 0, "voted_for": None, "commit_hint": 0}
    assert s.term == 0 and s.voted_for is None


def test_round_trip(tmp_path):
    path = str(tmp_path)
    s = StableStore(path)
    s.set_hard_state(3, "n2")
    s.set_hard_state(4, None)
    s.set_hard_state(4, "n1")
    s.set_commit_hint(17)
    s.set("bootstrapped", True)
    s.close()
    t = StableStore(path)
    assert t.load() == {"term": 4, "voted_for": "n1", "commit_hint": 17, "bootstrapped": True}
    assert (t.term, t.voted_for, t.commit_hint) == (4, "n1", 17)
    assert t.get("bootstrapped") is True
    assert sorted(n for n in os.listdir(path)) == ["stable.0", "stable.1"]


def test_commit_hint_is_lazy_until_flush(tmp_path):
    path = str(tmp_path)
    s = StableStore(path)
    s.set_hard_state(1, "n1")
    s.set_commit_hint(9)
    assert StableStore(path).commit_hint == 0
    s.flush()
    assert StableStore(path).commit_hint == 9
    s.set_commit_hint(12)
    s.set_hard_state(2, None)  # carries the hint along
    assert StableStore(path).load()["commit_hint"] == 12


def test_term_never_goes_backwards(tmp_path):
    s = StableStore(str(tmp_path))
    s.set_hard_state(5, "n1")
    with pytest.raises(ValueError):
        s.set_hard_state(4, "n1")
    with pytest.raises(ValueError):
        s.set_hard_state(-1, None)
    with pytest.raises(ValueError):
        s.set("term", 1)
    assert s.term == 5


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_corrupt_newest_falls_back_to_previous(tmp_path, damage):
    path = str(tmp_path)
    s = StableStore(path)
    s.set_hard_state(6, "n3")   # seq 1 -> stable.1
    s.set_hard_state(7, "n2")   # seq 2 -> stable.0 (newest)
    newest = os.path.join(path, "stable.0")
    data = open(newest, "rb").read()
    if damage == "flip":
        data = data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:]
    elif damage == "truncate":
        data = data[:-4]
    elif damage == "empty":
        data = b""
    else:
        data = os.urandom(50)
    with open(newest, "wb") as f:
        f.write(data)
    rec = Recorder()
    t = StableStore(path, log=rec)
    assert (t.term, t.voted_for) == (6, "n3")
    assert any(lv == "WARN" and f["name"] == "stable.0" for lv, _m, f in rec.records)
    # the next write replaces the corrupt copy, never the good one
    t.set_hard_state(8, None)
    u = StableStore(path)
    assert (u.term, u.voted_for) == (8, None)
    os.unlink(os.path.join(path, "stable.0"))
    assert StableStore(path).term == 6


def test_all_copies_corrupt_refuses_to_start(tmp_path):
    path = str(tmp_path)
    s = StableStore(path)
    s.set_hard_state(1, "n1")
    s.set_hard_state(2, "n1")
    for n in ("stable.0", "stable.1"):
        with open(os.path.join(path, n), "wb") as f:
            f.write(b"RKVSTBL1 nonsense")
    before = _files(path)
    rec = Recorder()
    with pytest.raises(StableStoreCorruptError) as caught:
        StableStore(path, log=rec)
    err = caught.value
    assert isinstance(err, StorageCorruptError)
    assert (err.path, err.offset) == (path, 0)
    assert "stable.0: length 544108398 does not match 1 payload bytes; stable.1: " in err.problem
    assert str(err).endswith(RECOVERY)
    # the refusal is the caller's one ERROR line; the store only warns
    assert {lv for lv, _m, _f in rec.records} == {"WARN"}
    assert _files(path) == before


def test_leftover_temp_file_is_harmless(tmp_path):
    path = str(tmp_path)
    s = StableStore(path)
    s.set_hard_state(2, "n2")
    with open(os.path.join(path, "stable.0.tmp"), "wb") as f:
        f.write(b"half a write")
    t = StableStore(path)
    assert (t.term, t.voted_for) == (2, "n2")
    t.set_hard_state(3, "n1")
    assert StableStore(path).term == 3


def test_write_is_fsynced(tmp_path, monkeypatch):
    s = StableStore(str(tmp_path))
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    s.set_hard_state(1, "n1")
    assert len(calls) >= 2  # the file and its directory
