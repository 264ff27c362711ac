"""Fuzzing one follower's Raft port in a live 3-node cluster under writes:
random bytes, and real frames (raftkv.transport.codec.encode of valid
messages) with bits flipped, bytes inserted or deleted, and length prefixes
and msgpack lengths inflated, with and without a Hello first, plus the
6 MB "array of millions" and nested-array frames. After every batch, every
node is up, every acknowledged write reads back on every node, and the
fuzzed node's RSS stays within 50 MB of where it started.

Two kinds of batches:

* **malformed**: every payload is checked here, with the node's own
  decoder, to put no Raft message in front of the core (nothing decodes
  after a valid Hello, or there is no valid Hello). The leader and its term
  must not move.
* **strangers**: a valid Hello naming a server that is not a member, then
  mutated frames that may still decode, and well-formed forged messages
  (higher terms, a leader's AppendEntries with entries, vote requests,
  TimeoutNow, a whole snapshot stream). Rule 8 of the core
  (raft/admission.py) ignores messages from non-members, so the leader and
  its term must not move either; the transport refuses a stranger's
  snapshot stream before it reaches the volume, so no snapshot of a term
  the cluster never had appears on the fuzzed node's disk.

The seed is fixed (replay another with RAFTKV_FUZZ_SEED=N) and printed.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import time

import pytest
from cluster import Writer, wait_until
from rawsock import read_until_closed

from raftkv.raft.configuration import Configuration, Server
from raftkv.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from raftkv.transport.codec import (
    MAGIC,
    VERSION,
    AuthChallenge,
    AuthProof,
    CodecError,
    FrameDecoder,
    Hello,
    SnapshotAck,
    SnapshotChunk,
    encode,
    hello,
)

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("RAFTKV_FUZZ_SEED", "1109"))
MB = 1_000_000
RSS_BOUND = 50 * MB
BATCHES = 10           # five of each kind
PAYLOADS_PER_BATCH = 100
TIME_BUDGET = 40.0     # seconds of throwing, all batches together

_RAFT_MESSAGES = (AppendEntries, AppendEntriesResponse, InstallSnapshot, InstallSnapshotResponse,
                  RequestVote, RequestVoteResponse, TimeoutNow)


def _stranger(rng: random.Random) -> str:
    return f"fuzz-{rng.randrange(10_000)}"


class PacedWriter(Writer):
    """cluster.Writer at a write every PACE seconds or so: enough to see the
    cluster take writes throughout, few enough keys to read all back often."""

    PACE = 0.02

    def run(self) -> None:
        i = 0
        while not self.stop_flag.wait(self.PACE):
            key, value = f"{self.prefix}{i}", f"v{i}"
            try:
                resp = self.node.get("/set", key=key, value=value)
                if resp.status == 200:
                    self.acked[key] = value
                elif resp.status == 503 and "outcome_unknown" in resp.json():
                    self.failures.append(resp.status)
                else:
                    self.unexpected.append(resp)
            except OSError as exc:
                self.failures.append(exc)
            i += 1


def real_frames(rng: random.Random, term: int, members: list[str]) -> list[bytes]:
    """Encoded valid messages, as a stranger would send them: terms around
    and above the cluster's, entries, configurations, snapshot control."""
    me = _stranger(rng)
    addr = f"127.0.0.1:{rng.randrange(1, 65536)}"
    t = term + rng.choice([0, 1, 5, 1000])
    conf = Configuration(tuple(Server(m, f"127.0.0.1:{9000 + i}") for i, m in enumerate(members))
                         + (Server(me, addr),))
    entries = tuple(Entry(100 + i, t, rng.choice([EntryType.COMMAND, EntryType.NOOP]),
                          rng.randbytes(rng.randrange(0, 64))) for i in range(rng.randrange(1, 8)))
    big = tuple(Entry(200 + i, t, EntryType.COMMAND, rng.randbytes(2048)) for i in range(40))  # > 64KiB
    return [encode(m) for m in (
        AppendEntries(t, me, addr, 99, t, entries, 150),
        AppendEntries(t, me, addr, 199, t, big, 240),
        AppendEntries(t, me, addr, 0, 0, (), 0, heartbeat=True, read_seq=7),
        AppendEntries(t, me, addr, 5, t, (Entry(6, t, EntryType.CONFIGURATION, conf.encode()),), 6),
        AppendEntriesResponse(t, True, 300, 299, 300, volume="fuzzvol"),
        RequestVote(t, me, addr, 10_000, t),
        RequestVote(t, me, addr, 10_000, t, pre_vote=True),
        RequestVote(t, me, addr, 10_000, t, leadership_transfer=True),
        RequestVoteResponse(t, True),
        InstallSnapshot(t, me, addr, SnapshotMeta(500, t, conf, 400, f"{t}-500-1", 16)),
        InstallSnapshotResponse(t, True, 500, volume="fuzzvol"),
        TimeoutNow(t, me),
        SnapshotChunk(rng.randbytes(16), True),
        SnapshotAck(False, "nope"),
        AuthChallenge(rng.randbytes(32)),
        AuthProof(rng.randbytes(32), rng.randbytes(32)),
    )] + [
        # a whole snapshot stream: stored, it would be restored from at the next start
        encode(InstallSnapshot(t, me, addr, SnapshotMeta(900, t, conf, 900, f"{t}-900-1", 16)))
        + encode(SnapshotChunk(rng.randbytes(16), True)),
    ]


# msgpack first bytes whose length can be inflated, and the 32-bit form of each
_ARRAY = set(range(0x90, 0xA0)) | {0xDC, 0xDD}
_STR = set(range(0xA0, 0xC0)) | {0xD9, 0xDA, 0xDB}
_BIN = {0xC4, 0xC5, 0xC6}


def _reframe(body: bytes | bytearray) -> bytes:
    return struct.pack(">I", len(body)) + bytes(body)


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """One or a few mutations of one frame."""
    out = bytearray(frame)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.randrange(8)
        if op == 0 and out:                          # flip bits
            for _ in range(rng.randrange(1, 9)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif op == 1:                                # insert bytes
            i = rng.randrange(len(out) + 1)
            out[i:i] = rng.randbytes(rng.randrange(1, 32))
        elif op == 2 and len(out) > 1:               # delete bytes
            i = rng.randrange(len(out))
            del out[i:i + rng.randrange(1, 32)]
        elif op == 3 and len(out) >= 4:              # lie in the length prefix
            out[:4] = struct.pack(">I", rng.choice([0, 1, len(out), len(out) + 100, 8 << 20,
                                                    (8 << 20) + 1, 2**31, 2**32 - 1]))
        elif op == 4 and len(out) > 5:               # inflate a msgpack length, keep the framing
            body = out[4:]
            spots = [i for i, b in enumerate(body) if b in _ARRAY | _STR | _BIN]
            if spots:
                i = rng.choice(spots)
                n = rng.choice([1025, 65_536, 5_000_000, 2**32 - 1])
                head = (b"\xdd" if body[i] in _ARRAY else b"\xdb" if body[i] in _STR else b"\xc6")
                body[i:i + 1] = head + struct.pack(">I", n)
                out = bytearray(_reframe(body))
        elif op == 5 and len(out) > 5:               # cut the body short, keep the framing
            out = bytearray(_reframe(out[4:4 + rng.randrange(1, len(out) - 4)]))
        elif op == 6:                                # duplicate a stretch
            i = rng.randrange(len(out) + 1)
            out[i:i] = out[rng.randrange(len(out) + 1):][:rng.randrange(1, 64)]
        else:                                        # cut the frame anywhere
            out = out[:rng.randrange(len(out) + 1)]
    return bytes(out)


def bombs() -> list[bytes]:
    """The 6 MB frame of the original report, and its nested cousin that
    passes the first-bytes check (an AppendEntries header)."""
    millions = _reframe(b"\xdd" + struct.pack(">I", 5_000_000) + b"\x90" * 6_000_000)
    inner = b"\xdc" + struct.pack(">H", 1024) + (b"\x94" + b"\x90" * 4) * 1024
    head = bytes([0x9A, 3, 1, 0xA2]) + b"n1" + bytes([0xA1]) + b"a" + bytes([0, 0])
    nested = _reframe(head + b"\xdc" + struct.pack(">H", 1024) + inner * 1024 + b"\x00\xc2\x00")
    return [millions, nested]


def reaches_core(payload: bytes) -> bool:
    """Whether the node would hand any Raft message of ``payload`` to its
    core: the first frame a valid Hello, then a Raft message before the
    first frame that does not decode (the node's own decoder decides)."""
    decoder = FrameDecoder()
    try:
        decoder.push(payload)
        first = decoder.pop()
        if type(first) is not Hello or first.magic != MAGIC or first.version != VERSION:
            return False
        while (msg := decoder.pop()) is not None:
            # a Raft message goes to the core (an InstallSnapshot opens a
            # stream first); a control frame here closes the connection
            return type(msg) in _RAFT_MESSAGES
    except CodecError:
        return False
    return False


def malformed_payload(rng: random.Random, frames: list[bytes]) -> bytes:
    """A payload that puts nothing in front of the core: regenerated until
    reaches_core() says so (bounded: noise always qualifies)."""
    for _ in range(20):
        kind = rng.randrange(6)
        greet = encode(hello(_stranger(rng), "127.0.0.1:1"))
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 4096))
        elif kind == 1:       # no Hello: real or mutated frames straight away
            payload = b"".join(rng.choice([f, mutate(rng, f)]) for f in rng.sample(frames, 3))
        elif kind == 2:       # a mutated Hello, then real frames
            payload = mutate(rng, greet) + b"".join(rng.sample(frames, 2))
        else:                 # a Hello, then mutated frames
            payload = greet + b"".join(mutate(rng, f) for f in rng.sample(frames, rng.randrange(1, 4)))
        if not reaches_core(payload):
            return payload
    return rng.randbytes(64)


def stranger_payload(rng: random.Random, frames: list[bytes]) -> bytes:
    """A valid Hello naming a non-member, then well-formed or mutated frames."""
    greet = encode(hello(_stranger(rng), f"127.0.0.1:{rng.randrange(1, 65536)}"))
    picked = rng.sample(frames, rng.randrange(1, 5))
    return greet + b"".join(f if rng.random() < 0.5 else mutate(rng, f) for f in picked)


def throw(port: int, payload: bytes) -> None:
    """One connection: send, half-close, wait (bounded) for the node to hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s, contextlib.suppress(OSError):
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        read_until_closed(s)


def check_cluster(cluster, writer: Writer, target, rss_start: int, what: str, checked: set[str]) -> int:
    """Every node up; every acknowledged write on the fuzzed node, and those
    not yet checked on the others too; the fuzzed node's RSS bounded and no
    stranger's snapshot on its volume. Returns its RSS."""
    for node in cluster.nodes.values():
        assert node.running, f"{node.id} died after {what} (seed {SEED}):\n{node.log()[-3000:]}"
    leader = cluster.leader()
    acked = dict(writer.acked)
    commit = leader.status()["commit_index"]
    cluster.wait_applied(commit, timeout=30)
    for node in cluster.nodes.values():
        for key, value in acked.items():
            if node is target or key not in checked:
                assert node.value(key, stale=True) == value, (node.id, key, what, SEED)
    checked.update(acked)
    term = leader.status()["term"]
    snapshots = os.listdir(target.volume / "snapshots")
    assert all(int(name.split("-")[0]) <= term for name in snapshots), (snapshots, what, SEED)
    rss = target.status()["rss_bytes"]
    assert rss < rss_start + RSS_BOUND, f"{target.id} RSS {rss / MB:.0f} MB after {what} (seed {SEED})"
    return rss


def test_fuzzing_a_followers_raft_port_under_writes(cluster):
    print(f"raft port fuzz seed {SEED} (replay with RAFTKV_FUZZ_SEED={SEED})")
    rng = random.Random(SEED)
    leader = cluster.form(3)
    target = cluster["n3"]
    term = leader.status()["term"]
    frames = real_frames(rng, term, sorted(cluster.nodes))
    writer = PacedWriter(leader, "fz")
    writer.start()
    checked: set[str] = set()
    sent = 0
    started = time.monotonic()
    try:
        wait_until(lambda: len(writer.acked) >= 20, what="writes before the fuzzing")
        rss_start = target.status()["rss_bytes"]
        rss_peak = rss_start
        big = bombs()
        for batch in range(BATCHES):
            kind = "malformed" if batch % 2 == 0 else "strangers"
            make = malformed_payload if kind == "malformed" else stranger_payload
            payloads = [make(rng, frames) for _ in range(PAYLOADS_PER_BATCH)]
            if kind == "malformed":
                payloads[rng.randrange(len(payloads))] = encode(hello("fuzz-big", "127.0.0.1:1")) + big[batch // 2 % 2]
            acked_before = len(writer.acked)
            for payload in payloads:
                if time.monotonic() - started > TIME_BUDGET:
                    break
                throw(target.raft_port, payload)
                sent += 1
            # the cluster keeps taking writes through the batch and after it
            wait_until(lambda n=acked_before: len(writer.acked) >= n + 10, timeout=30,
                       what=f"writes after batch {batch} ({kind})")
            rss_peak = max(rss_peak, check_cluster(cluster, writer, target, rss_start,
                                                   f"batch {batch} ({kind})", checked))
            # Neither kind moves the cluster: malformed payloads never reach
            # the core, and the core ignores messages from non-members.
            assert cluster.leader() is leader and leader.status()["term"] == term, \
                f"batch {batch} ({kind}) moved the cluster (seed {SEED})"
            if time.monotonic() - started > TIME_BUDGET:
                break
        elapsed = time.monotonic() - started
    finally:
        writer.stop_flag.set()
        writer.join(30)
    log = target.log()
    counts = {what: log.count(what) for what in (
        "[ERROR] raft.net: failed to decode incoming command", "[WARN]  raft: ignoring ",
        "[WARN]  raft.net: refusing a snapshot from a server not in the configuration")}
    print(f"raft port fuzz: {sent} payloads in {elapsed:.1f}s, seed {SEED}, {len(writer.acked)} acked writes, "
          f"fuzzed node RSS {rss_start / MB:.0f} MB at start, {rss_peak / MB:.0f} MB at most; lines: {counts}")
    assert sent >= 200, f"only {sent} payloads within the time budget"
    assert not writer.unexpected, writer.unexpected
    assert "[ERROR] raft.net: failed to decode incoming command" in log
    # strangers' well-formed messages reached the core, which ignored them
    assert "[WARN]  raft: ignoring " in log
    assert ("[WARN]  raft.net: the Raft port is unauthenticated: anyone who can reach "
            f"127.0.0.1:{target.raft_port} can join the cluster's traffic; set RAFT_CLUSTER_KEY or "
            'RAFT_TLS_* (README, "Cluster key")') in log
    for node in cluster.nodes.values():
        text = node.log()
        assert "Traceback" not in text and "internal error" not in text, node.id
        assert "[ERROR] raft: failed to process" not in text, node.id
    checked.clear()  # at the end, every write on every node
    check_cluster(cluster, writer, target, rss_start, "the fuzzing", checked)


KEY = "idle-test-cluster-key-0123456789"


def test_idle_raft_connections_are_closed_and_redialed_without_a_word(cluster):
    # With the cluster key, so that every redial runs the challenge again.
    cluster.env.update({"RAFT_CONN_IDLE_TIMEOUT": "1s", "RAFT_CLUSTER_KEY": KEY})
    leader = cluster.form(3, via_env_join=True)
    follower = cluster["n2"]
    index = leader.set("before", "quiet")["index"]
    wait_until(lambda: follower.status()["applied_index"] >= index, what="n2 to apply the write")
    # Heartbeats keep their channel busy; the append channel falls idle and
    # the follower closes it after a second of silence.
    seen = len(follower.log())
    wait_until(lambda: "[DEBUG] raft.net: closing idle connection: node-id=n1" in follower.log()[seen:],
               timeout=15, what="n2 to close n1's idle append connection")
    mark = {node.id: len(node.log()) for node in cluster.nodes.values()}
    for i in range(5):
        assert leader.set(f"after{i}", "quiet")["index"] > 0  # the leader redials as it writes
    cluster.wait_applied(leader.status()["commit_index"])
    assert "[DEBUG] raft.net: accepted connection" in follower.log()[mark[follower.id]:]
    for node in cluster.nodes.values():
        assert node.value("after4", stale=True) == "quiet"
        since = node.log()[mark[node.id]:]
        assert "[ERROR]" not in since and "[WARN]" not in since, f"{node.id}:\n{since[-3000:]}"
        assert "the Raft port is unauthenticated" not in node.log()
