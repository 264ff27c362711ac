"""A node's settings, and the textual forms of their values.

:mod:`.settings` reads every setting from the environment and ``raftkv
serve``'s flags into one frozen ``NodeSettings``; :mod:`.tls` builds the TLS
contexts from the ``RAFT_TLS_*`` files; :mod:`.textforms` holds the forms
raftkv reads or writes in more than one place (host:port, booleans, node ids,
log levels, Go durations).
"""
