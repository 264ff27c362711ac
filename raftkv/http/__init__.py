"""A node's HTTP side, by concern.

- :mod:`raftkv.http.routes`: every route of the port, in one table that
  both servers read.
- :mod:`raftkv.http.api`: what the routes do, whichever server framed the
  request: the contract with the node (``handle``), the request and the
  context (``context``), parameters, answers, keys, the cluster, admin,
  forwarding to the leader and the registry of HTTP addresses.
- :mod:`raftkv.http.server`: the servers of the port: the fast path on
  httptools, the aiohttp application behind it, the port's limits.
- :mod:`raftkv.http.workers`: the HTTP worker processes (``HTTP_WORKERS``).
- :mod:`raftkv.http.pages`: the dashboard and the learning page.

Only :mod:`raftkv.main` builds the HTTP side; the runtime never imports it.
"""
