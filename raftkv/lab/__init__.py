"""The Raft lab: a learner writes one rule of the core at a time, the
simulator grades it, and ``raftkv serve --lab DIR`` runs it as a real node.

Theory of operation: each exercise (:mod:`.exercises`) is one function of
:class:`raftkv.raft.rules.Rules`. ``raftkv lab start NAME DIR`` copies its
template into ``DIR/NAME.py``; :mod:`.loader` imports the files found in a
directory and builds a ``Rules`` from them, the core's own functions
standing in for those not written. :mod:`.grader` runs the exercise's
scenarios, then seeded randomized simulator runs under faults, with the
learner's functions in every node; :mod:`.tracing` records the steps and the
learner's calls, so that the first broken invariant is printed with its
seed, the command that replays it, the last steps before the break and the
rule of the paper it points at. See docs/lab.md.
"""
