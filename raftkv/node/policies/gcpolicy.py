"""When the node lets Python's cycle collector run.

Theory of operation
-------------------
The Raft log keeps every entry since the last snapshot in memory: under
sustained writes that is hundreds of thousands of small tracked objects
(one ``Entry`` per write) that live until the next compaction. CPython's
oldest-generation collection walks all of them, and it runs each time the
long-lived population grows by a quarter: measured on a node taking ~6,000
writes/s, pauses of 50-300 ms every few seconds, which stall heartbeats
(followers time out, a leader misses its lease) and make the p99 of every
request.

The policy:

1. ``started()``: after start-up (modules, restored state) ``gc.freeze()``
   moves everything alive to the permanent generation, which collections
   skip.
2. ``tick()`` (every housekeeping round): at most every ``freeze_every``
   seconds, collect the young generations (cheap) and freeze what survived.
   The oldest generation thus only ever holds a few seconds of survivors.
3. ``compacted()`` (after the log was compacted behind a snapshot, when it is
   shortest): ``gc.unfreeze()``, one full collection, freeze again. That
   reclaims any reference cycle that became garbage after being frozen;
   with the log just compacted this full collection walks only the trailing
   entries.
4. A node that writes too little to ever snapshot still gets that full
   collection from ``tick()`` every ``full_every`` seconds, as long as at
   most ``full_limit`` objects are frozen (a pause of a few tens of ms at
   most). More frozen objects than that means a long log, and so a snapshot
   and its compaction are coming. Either way a reference cycle is not kept
   for longer than a snapshot interval or ``full_every``.

Reference counting frees everything else as usual, frozen or not.
"""

from __future__ import annotations

import gc
import time


class GcPolicy:
    def __init__(self, freeze_every: float = 2.0, full_every: float = 60.0, full_limit: int = 200_000,
                 clock=time.monotonic) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every
        self.full_limit = full_limit
        self.clock = clock
        self._last = self._last_full = clock()

    def started(self) -> None:
        gc.collect()
        gc.freeze()
        self._last = self._last_full = self.clock()

    def tick(self) -> None:
        now = self.clock()
        if now - self._last_full >= self.full_every:
            # get_freeze_count() walks every frozen object: ask once per
            # full_every, not on every tick after a refusal
            if gc.get_freeze_count() <= self.full_limit:
                self.compacted()
                return
            self._last_full = now
        if now - self._last >= self.freeze_every:
            self._last = now
            gc.collect(1)
            gc.freeze()

    def compacted(self) -> None:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._last = self._last_full = self.clock()
