"""The 6.5840 lab's test helpers (``one()``, concurrent starts), shared by
the lab scenario modules of this directory, over HTTP to namespaced nodes."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from raftkv.chaos.netnode import wait_until

# the long versions of the scenarios (what the lab runs); CI runs them bounded
LONG = os.environ.get("RAFTKV_NETNS_LONG", "") not in ("", "0", "false")
ELECTION_BOUND = 5.0   # the lab: a leader within 5 s
AGREE_BOUND = 10.0     # the lab's one(): a command agreed within 10 s


def agreed_everywhere(c, key, value, ids=None, timeout=AGREE_BOUND):
    for node_id in ids or [n.id for n in c.running()]:
        wait_until(lambda n=c[node_id]: n.value(key, stale=True) == value, timeout,
                   what=f"{node_id} to apply {key}={value}")


def one(c, key, value, ids=None, timeout=AGREE_BOUND):
    """The lab's one(): submit until some leader commits it, then every
    expected server has it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            leader = c.leader(timeout=max(0.5, deadline - time.monotonic()), among=ids)
            committed = leader.set(key, value, timeout=3).status == 200
        except AssertionError:
            committed = False  # no leader yet: the lab's one() keeps trying until its deadline
        if committed:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{key}={value} not committed within {timeout}s")
    agreed_everywhere(c, key, value, ids, timeout)


def submit_many(node, prefix, count, timeout=1.0):
    """Fire ``count`` writes at once at ``node``; return how many were acknowledged."""
    with ThreadPoolExecutor(max_workers=min(count, 25)) as pool:
        results = list(pool.map(lambda i: node.set(f"{prefix}{i}", str(i), timeout=timeout).status,
                                range(count)))
    return sum(1 for s in results if s == 200)
