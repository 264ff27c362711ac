"""A follower whose disk damaged what it had acknowledged refuses to start
(one ERROR line naming the file and the offset, a non-zero exit, every file
left as it was) instead of cutting the damage off as a torn tail and voting
as if it never held those entries; wiped, it comes back and serves every
acknowledged write. Once for 8 bytes flipped in the middle of its biggest
log segment, once for its newest snapshot cut short."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from cluster import Node, wait_until

pytestmark = pytest.mark.integration

RECOVERY = ("wipe the volume (RAFT_VOLUME_DIR) and start the node again: "
            "the cluster re-admits it as a new server once it has caught up")


def _tree(volume: Path) -> dict[str, bytes]:
    # LOCK is rewritten with the pid of every process that opens the volume
    return {str(p.relative_to(volume)): p.read_bytes() for p in sorted(volume.rglob("*"))
            if p.is_file() and p.name != "LOCK"}


def _record_at(segment: Path, offset: int) -> int:
    """Where the log record holding byte ``offset`` starts."""
    data = segment.read_bytes()
    pos = 0
    while True:
        length, _crc = struct.unpack_from(">II", data, pos)
        end = pos + 8 + length
        if end > offset:
            return pos
        pos = end


def _refused_start(node: Node) -> str:
    """Start ``node`` on its damaged volume: it must exit non-zero without
    touching a file, and log exactly one ERROR line, which is returned."""
    before = _tree(node.volume)
    seen = len(node.log())
    node.start()
    code = node.proc.wait(60)
    assert code == 73, node.log()[seen:]  # the volume is unusable: a supervisor should not retry
    assert _tree(node.volume) == before
    run = node.log()[seen:]
    assert "Traceback" not in run, run
    errors = [line for line in run.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, run
    assert "truncated torn tail" not in run
    return errors[0]


def _wipe_and_catch_up(node: Node, leader: Node, acked: dict[str, str]) -> None:
    shutil.rmtree(node.volume)
    node.start().wait_ready()
    commit = leader.status()["commit_index"]
    wait_until(lambda: node.status()["applied_index"] >= commit, 60, what=f"the wiped {node.id} to catch up")
    for key, value in acked.items():
        assert node.value(key, stale=True) == value, key


def test_a_damaged_log_or_snapshot_is_refused_and_a_wiped_node_catches_up(cluster):
    leader = cluster.form(3)
    n3 = cluster["n3"]
    acked: dict[str, str] = {}

    def write(prefix: str, n: int) -> None:
        for i in range(n):
            key, value = f"{prefix}{i}", f"{prefix}{i}:" + "v" * 1000
            assert leader.set(key, value)["index"] > 0
            acked[key] = value

    # -- 8 bytes flipped in the middle of the biggest segment
    write("a", 400)
    cluster.wait_applied(leader.status()["commit_index"])
    assert n3.stop() == 0
    segment = max((n3.volume / "log").glob("*.seg"), key=lambda p: p.stat().st_size)
    size = segment.stat().st_size
    assert size > 400_000
    middle = size // 2
    with open(segment, "r+b") as f:
        f.seek(middle)
        damaged = bytes(b ^ 0xFF for b in f.read(8))
        f.seek(middle)
        f.write(damaged)
    write("b", 20)  # acknowledged by the other two meanwhile

    line = _refused_start(n3)
    offset = _record_at(segment, middle)
    assert "[ERROR] raft: failed to start node: " in line
    assert f"{segment} is corrupt at offset {offset}: checksum mismatch, and an intact record follows" in line
    assert RECOVERY in line
    _wipe_and_catch_up(n3, leader, acked)

    # -- the newest snapshot cut short
    write("c", 20)
    cluster.wait_applied(leader.status()["commit_index"])
    assert n3.post("/snapshot").status == 200
    assert n3.stop() == 0
    newest = max((p for p in (n3.volume / "snapshots").iterdir() if not p.name.endswith(".tmp")),
                 key=lambda p: tuple(int(x) for x in p.name.split("-")))
    state = newest / "state.bin"
    full = state.stat().st_size
    kept = full // 2
    os.truncate(state, kept)
    write("d", 20)

    line = _refused_start(n3)
    assert (f"{state} is corrupt at offset {kept}: the newest snapshot's data is {kept} bytes, "
            f"meta.json says {full}") in line
    assert RECOVERY in line
    _wipe_and_catch_up(n3, leader, acked)
