"""Read leases, after LeaseGuard (Davis, Demirbas and Deng, SIGMOD 2026): the
log is the lease. Plain bookkeeping without effects, like
:mod:`.snapshot_policy`; :mod:`.client_requests` and :mod:`.replication`
act on it.

Theory of operation
-------------------
Committing an entry of its own term grants the leader a lease that lasts
``duration`` from the moment it *created* that entry: while it holds one, no
other leader can have committed anything, so it serves a read from its state
at once, without a heartbeat round. No message, field or vote changes.

A new leader cannot know when its predecessor last committed, but it knows
when it last took an entry from any leader: every entry a predecessor
committed is in its log (Leader Completeness), so it was appended here no
earlier than it was created. Until ``duration`` has passed since that
moment, the new leader replicates writes but commits nothing (the paper's
first optimisation, deferred commit: writes are taken at once and answered
when the old lease is over), so no read served under an old lease misses a
write acknowledged since. A node that restarted counts its start as that
moment: what it appended before is not remembered.

Clocks. raftkv compares no clocks of different machines: every time here
is one node's monotonic clock, and the only assumption is that no node's
clock runs faster or slower than real time by more than ``drift`` (a rate,
0.01 = 1 %). The holder ends its lease ``duration * (1 - drift)`` after
creating the entry, by its own clock, minus ``margin`` ms; the successor
waits ``duration * (1 + drift)`` by its clock, plus ``margin``. A clock
that drifts further, or a process that reads its clock late, can serve a
stale read: ``tests/sim/test_lease_reads_sim.py`` shows one.

A leader that hands leadership over (TimeoutNow) ends its lease for the
rest of its term, and sends TimeoutNow only once it has itself waited out
its predecessor's lease; the node that takes over by that TimeoutNow skips
the wait (nothing else can hold a lease then). A lease read on a leader
without a valid lease falls back to ReadIndex and proposes a no-op, whose
commit grants a new lease; an idle leader's lease lapses on its own.

The paper's second optimisation (a new leader serving at once the reads of
keys its predecessor's uncommitted entries do not touch) needs the keys of
every entry, which the core does not read: commands are opaque bytes to it.
It is left out; such reads wait with the rest (ReadIndex or the lease).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["LeaderLease", "LeaseRules"]


@dataclass(frozen=True)
class LeaseRules:
    """How long leases last, in the core's milliseconds; ``duration`` 0: no leases."""
    duration: int
    drift: float = 0.01
    margin: int = 5

    @property
    def enabled(self) -> bool:
        return self.duration > 0

    def held_until(self, created: int) -> int:
        """The end of a lease granted by an entry created at ``created``, by the holder's clock."""
        return created + math.floor(self.duration * (1 - self.drift)) - self.margin

    def inherited_until(self, appended: int) -> int:
        """When a predecessor's lease is surely over, by the clock of a node
        that last took an entry from a leader at ``appended``."""
        return appended + math.ceil(self.duration * (1 + self.drift)) + self.margin


class LeaderLease:
    """A leader's lease: when it created its entries, how long their commits
    let it serve reads, and until when it waits for its predecessor's."""

    __slots__ = ("created", "until", "wait_until", "ended", "renewal")

    def __init__(self, wait_until: int) -> None:
        self.created: deque[tuple[int, int]] = deque()   # (index, creation time), uncommitted own entries
        self.until = 0              # serve reads under the lease while now < until
        self.wait_until = wait_until  # commit nothing before this (the predecessor's lease)
        self.ended = False          # handed over: no lease again in this term
        self.renewal = 0            # the index of a no-op appended to renew the lease, until committed

    def appended(self, last: int, now: int) -> None:
        """Own entries up to ``last`` were created at ``now``."""
        self.created.append((last, now))

    def committed(self, index: int, rules: LeaseRules) -> None:
        """Entries up to ``index`` are committed: the newest of them grants the lease."""
        newest = None
        created = self.created
        while created and created[0][0] <= index:
            newest = created.popleft()[1]
        if self.renewal and self.renewal <= index:
            self.renewal = 0
        if newest is not None and not self.ended:
            self.until = max(self.until, rules.held_until(newest))

    def valid(self, now: int) -> bool:
        return now < self.until and not self.ended

    def end(self) -> None:
        self.ended = True
        self.until = 0
