"""Fault-tolerance tooling: operation histories, a linearizability checker,
a client workload that records histories, and a PNG timeline of a run.

Nothing here is imported by a running node; the test suite and
``scripts/chaos.sh`` use it to drive real clusters and judge the result.
"""
