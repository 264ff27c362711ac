"""The ``raftkv`` command (``python -m raftkv``).

:mod:`.main` parses the command line and runs one subcommand: ``serve`` runs a
node (:func:`raftkv.main.run_node`), ``sim`` and ``replay`` hand over to
:mod:`raftkv.sim.cli`, the others talk to a node over its HTTP API, and
``bench`` is :mod:`.bench`, the closed-loop load generator.
"""
