"""Majority arithmetic.

Theory of operation: a quorum is a strict majority of the voters of the
latest configuration. The leader's commit index is the largest index that a
quorum has matched (the "median" of the sorted match indexes), and a
leadership confirmation round succeeds when a quorum acknowledged it.
Nonvoters never count.
"""

from __future__ import annotations

from collections.abc import Iterable


def votes_needed(voter_count: int) -> int:
    return voter_count // 2 + 1


def quorum_value(values: Iterable[int]) -> int:
    """The largest value that at least a majority of ``values`` reach
    (0 for an empty set). Used for commit indexes and read rounds."""
    ordered = sorted(values, reverse=True)
    if not ordered:
        return 0
    return ordered[votes_needed(len(ordered)) - 1]
