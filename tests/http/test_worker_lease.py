"""An HTTP worker's lease reads (raftkv.http.workers.worker): served from a
fresh look at the state machine's file while the lease board shows a lease
(a new look only when the board's applied index is past the worker's view),
with no request to the Raft process; confirmed through the Raft process when
there is none, when it ended before the look, or when the file is short of
the lease's floor; and a lease half gone is renewed by one lease read. A
LinkClient over a transport that records what is written, a real lease
board, and a reader whose file we move by hand."""

from __future__ import annotations

import asyncio
import sys

import pytest
from test_link_batching import RecordingTransport

from raftkv.http.workers.leaseboard import LeaseBoard
from raftkv.http.workers.link import READ, LinkClient
from raftkv.http.workers.worker import WorkerNode

DURATION = 500


class FileReader:
    """The state machine's file as a worker sees it: ``file_index`` is what
    the file holds, ``applied_index`` what the last look saw."""

    def __init__(self, file_index: int) -> None:
        self.file_index = file_index
        self.applied_index = 0
        self.looks = 0

    def renew(self) -> int:
        self.looks += 1
        self.applied_index = self.file_index
        return self.applied_index

    def get(self, key: str) -> str:
        return f"{key}@{self.applied_index}"


@pytest.fixture
def board(tmp_path):
    writer = LeaseBoard(str(tmp_path / "http-lease"), writer=True)
    yield writer
    writer.close()


def worker(board: LeaseBoard, file_index: int = 10) -> tuple[WorkerNode, RecordingTransport, FileReader]:
    board.publish_applied(file_index)  # the Raft process applied what the file holds
    link = LinkClient()
    transport = RecordingTransport()
    link.attach(transport)
    link.is_leader = True
    reader = FileReader(file_index)
    return WorkerNode("n1", link, reader, 5.0, LeaseBoard(board.path)), transport, reader


def lease_for(ms: float) -> int:
    return int(LeaseBoard.now() + ms)


async def test_reads_under_a_lease_ask_the_raft_process_nothing_and_share_one_look(board):
    board.publish(lease_for(DURATION), 3, DURATION)
    node, transport, reader = worker(board)
    reads = [node.read_barrier_nowait(lease=True) for _ in range(3)]
    assert len({id(r) for r in reads}) == 1
    assert await reads[0] == 10
    await asyncio.sleep(0)
    assert transport.frames == [] and reader.looks == 1
    # nothing applied since: the next turn's reads need no new look
    assert await node.read_barrier_nowait(lease=True) == 10 and reader.looks == 1
    # a write applied (and so maybe acknowledged) since: the next turn looks again
    reader.file_index = 11
    board.publish_applied(11)
    assert await node.read_barrier_nowait(lease=True) == 11 and reader.looks == 2


async def test_without_a_lease_a_lease_read_asks_the_raft_process(board):
    node, transport, reader = worker(board)
    read = node.read_barrier_nowait(lease=True)
    await asyncio.sleep(0)
    assert [(f[0], f[2]) for f in transport.frames] == [(READ, True)]
    node.link.received([transport.frames[0][1], True, 10])
    assert await read == 10


async def test_an_expired_lease_is_no_lease(board):
    board.publish(lease_for(-1), 3, DURATION)
    node, transport, _ = worker(board)
    node.read_barrier_nowait(lease=True)
    await asyncio.sleep(0)
    assert [(f[0], f[2]) for f in transport.frames] == [(READ, True)]


async def test_a_lease_half_gone_is_renewed_by_one_lease_read_while_reads_go_on(board):
    board.publish(lease_for(DURATION / 4), 3, DURATION)
    node, transport, _ = worker(board)
    first = node.read_barrier_nowait(lease=True)
    assert await first == 10
    second = node.read_barrier_nowait(lease=True)
    assert await second == 10
    await asyncio.sleep(0)
    assert [(f[0], f[2]) for f in transport.frames] == [(READ, True)]  # one renewal, not one per read
    node.link.received([transport.frames[0][1], True, 10])
    await asyncio.sleep(0)
    node.read_barrier_nowait(lease=True)
    await asyncio.sleep(0)
    assert len(transport.frames) == 2  # the renewal answered: the next read asks again


async def test_a_lease_that_ends_before_the_look_sends_the_reads_to_the_raft_process(board):
    board.publish(lease_for(DURATION), 3, DURATION)
    node, transport, reader = worker(board)
    read = node.read_barrier_nowait(lease=True)
    board.publish(0, 0, DURATION)  # a handover started before this turn's look
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [(f[0], f[2]) for f in transport.frames] == [(READ, True)] and not read.done()
    reader.file_index = 12
    board.publish_applied(12)
    node.link.received([transport.frames[0][1], True, 12])
    assert await read == 12


async def test_a_file_short_of_the_leases_floor_sends_the_reads_to_the_raft_process(board):
    board.publish(lease_for(DURATION), 20, DURATION)  # a new leader's predecessors' entries reach 20
    node, transport, reader = worker(board, file_index=15)
    read = node.read_barrier_nowait(lease=True)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [(f[0], f[2]) for f in transport.frames] == [(READ, True)] and not read.done()
    reader.file_index = 20
    board.publish_applied(20)
    node.link.received([transport.frames[0][1], True, 20])
    assert await read == 20


def test_a_half_written_board_shows_no_lease(board):
    board.publish(lease_for(DURATION), 3, DURATION)
    reader = LeaseBoard(board.path)
    until, floor, duration = reader.read()
    assert floor == 3 and duration == DURATION and until > LeaseBoard.now()
    board._map[0:8] = (2 * board._seq + 1).to_bytes(8, sys.byteorder)  # the writer is half-way
    assert reader.read() is None
    board.publish(0, 0, 0)
    assert reader.read() == (0, 0, 0)
    board.publish_applied(42)
    assert reader.applied_and_changed()[0] == 42 and reader.read() == (0, 0, 0)
    reader.close()


async def test_a_view_that_holds_the_boards_applied_index_serves_a_lease_read_at_once(board):
    board.publish(lease_for(DURATION), 3, DURATION)
    node, transport, reader = worker(board)
    assert not node.serve_under_lease()      # no look at the file yet
    assert await node.read_barrier_nowait(lease=True) == 10 and reader.looks == 1
    assert node.serve_under_lease() and reader.looks == 1
    board.publish_applied(11)                # a write applied since, maybe acknowledged
    assert not node.serve_under_lease()
    board.publish_applied(10)
    board.publish(lease_for(-1), 3, DURATION)
    assert not node.serve_under_lease()      # no lease
    board.publish(lease_for(DURATION / 4), 3, DURATION)
    assert node.serve_under_lease()
    await asyncio.sleep(0)
    assert [(f[0], f[2]) for f in transport.frames] == [(READ, True)]  # half gone: renewed


async def test_entries_that_change_no_key_need_no_new_look(board):
    """The no-ops that renew the lease move the board's applied index but not
    its ``changed``: a view that holds ``changed`` holds the keys as of the
    applied index, so it serves lease reads, and plain reads, without a new
    look at the file; a write (or a restored state) moves ``changed``."""
    board.publish(lease_for(DURATION), 3, DURATION)
    node, transport, reader = worker(board)
    assert await node.read_barrier_nowait(lease=True) == 10 and reader.looks == 1
    board.publish_applied(12, changed=10)    # two no-ops committed since the view
    assert node.serve_under_lease() and reader.looks == 1
    assert node.get_local("k") == "k@10" and reader.looks == 1
    board.publish(lease_for(DURATION), 12, DURATION)  # a new leader's floor, reached by no-ops only
    assert node.serve_under_lease()
    board.publish(lease_for(DURATION), 13, DURATION)  # a floor the Raft process has not applied
    assert not node.serve_under_lease()
    board.publish(lease_for(DURATION), 3, DURATION)
    reader.file_index = 13
    board.publish_applied(13, changed=13)    # a write, maybe acknowledged: look again
    assert not node.serve_under_lease()
    assert node.get_local("k") == "k@13" and reader.looks == 2
    assert node.serve_under_lease()
    await asyncio.sleep(0)
    assert transport.frames == []


def test_the_board_carries_where_the_keys_last_changed(board):
    reader = LeaseBoard(board.path)
    board.publish_applied(7)
    assert reader.applied_and_changed() == (7, 7)   # not told: no less than the index itself
    board.publish_applied(9, changed=7)
    assert reader.applied_and_changed() == (9, 7)
    reader.close()
