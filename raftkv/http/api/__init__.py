"""The HTTP API: what each route does, whichever server framed the request.

Requests, parameters and answers; keys, membership, backups and the admin
routes; forwarding to the leader and the registry of the members' HTTP
addresses. Nothing here listens on a port: :mod:`raftkv.http.server` does.
"""
