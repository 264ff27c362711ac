"""Runs recorded step by step, for the dashboard's replay view and ``raftkv replay``.

:mod:`.record` plays a scripted scenario in the simulator and keeps every step
as data (``raftkv sim --json-trace``, ``/ui/replay?scenario=NAME``);
:mod:`.replay` feeds the step traces a node recorded (``RAFT_TRACE``) through
a fresh core, checks that it does the same, and shows them the same way.
"""
