"""The calls of the client API, written once for both clients.

:class:`Calls` builds each call as an :class:`~.core.Operation` and hands it
to ``self._run``: :class:`~.sync.Client`'s runs it and returns the result,
:class:`~.aio.AsyncClient`'s returns a coroutine to await. So every method
here is a method of both, with the same arguments and the same result.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from raftkv.config.tls import client_context_for_ca

from .core import Book, Operation, Policy, Steps, conduct
from .errors import BadRequest

__all__ = ["LEVELS", "Calls"]

# rqlite's read levels, as raftkv's /get takes them (docs/reads.md)
LEVELS = ("none", "weak", "linearizable", "lease", "strong")


def _addresses(addresses: str | Iterable[str]) -> list[str]:
    if isinstance(addresses, str):
        addresses = addresses.split(",")
    return [a.strip() for a in addresses if a and a.strip()]


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def _key(key: Any) -> str:
    key = _text("key", key)
    if not key:
        raise BadRequest("empty key", param="key")
    return key


def _value(body: Any) -> Any:
    return body.get("value") if isinstance(body, dict) else None


def _index(body: Any) -> Any:
    return body.get("index") if isinstance(body, dict) else None


def _removed(body: Any) -> bool:
    return bool(body.get("removed")) if isinstance(body, dict) else False


class Calls:
    """The client API; a subclass supplies ``_run(operation)``."""

    def __init__(self, addresses: str | Iterable[str], *, cacert: str | os.PathLike | None = None,
                 cluster_key: str | None = None, timeout: float = 10.0) -> None:
        """``addresses``: the HTTP address of one node or more (``host:port``,
        a URL, or several of them comma-separated); any member will do, the
        client finds the leader. ``cacert``: the CA file that signed the
        nodes' certificates (the cluster serves HTTPS; ``host:port`` then
        means https). ``cluster_key``: the cluster's ``RAFT_CLUSTER_KEY``,
        sent on the admin calls (``join``, ``remove_peer``,
        ``transfer_leadership``). ``timeout``: each call's deadline in
        seconds, retries through an election included."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        listed = _addresses(addresses)
        self.cacert = os.fspath(cacert) if cacert is not None else None
        tls = self.cacert is not None or any(a.lower().startswith("https://") for a in listed)
        self._book = Book(listed, tls)
        self._ssl = client_context_for_ca(self.cacert, setting="cacert") if tls else None
        self._policy = Policy(timeout=float(timeout), read_attempt=min(5.0, float(timeout)))
        self._admin_headers = {"Authorization": f"Bearer {cluster_key}"} if cluster_key else {}

    @property
    def addresses(self) -> list[str]:
        """The base URLs of the nodes the client was given."""
        return list(self._book.seeds)

    @property
    def timeout(self) -> float:
        return self._policy.timeout

    def _run(self, op: Operation) -> Any:
        raise NotImplementedError

    def _steps(self, op: Operation) -> Steps:
        """``op`` as :func:`~.core.conduct`'s steps, for ``_run`` to drive."""
        return conduct(op, self._book, self._policy, self._admin_headers if op.admin else {})

    # --- keys

    def set(self, key: str, value: str) -> Any:
        """Set ``key`` to ``value`` once the cluster committed and applied it.
        Returns the index of the entry that wrote it (an int)."""
        key = _key(key)
        return self._run(Operation(f"set {key!r}", "POST", "/set", json={"key": key, "value": _text("value", value)},
                                   write=True, result=_index))

    def get(self, key: str, level: str = "linearizable") -> Any:
        """The value of ``key``, or None if it has none. ``level``: how fresh
        the read must be, one of :data:`LEVELS` (docs/reads.md): ``none``
        (the node asked, at once), ``weak`` (the leader, unchecked),
        ``linearizable`` (the default), ``lease``, ``strong`` (through the log)."""
        key = _key(key)
        if level not in LEVELS:
            raise BadRequest(f"unknown read level {level!r}: one of {', '.join(LEVELS)}", param="level")
        return self._run(Operation(f"get {key!r}", "GET", "/get", {"key": key, "level": level},
                                   result=_value, missing=None))

    def delete(self, key: str) -> Any:
        """Remove ``key``; returns whether it had a value (a bool)."""
        key = _key(key)
        return self._run(Operation(f"delete {key!r}", "POST", "/remove", {"key": key}, write=True,
                                   result=_removed))

    # --- the cluster

    def status(self, address: str | None = None) -> Any:
        """A node's ``/status`` (a dict: ``id``, ``state``, ``term``,
        ``leader``, ``commit_index``, ``applied_index``, ...): the node
        ``address`` if given, else the node the client talks to (the leader
        once it is known)."""
        return self._run(Operation("status", "GET", "/status", node=address))

    def peers(self) -> Any:
        """The members as the leader sees them: a list of dicts (``id``,
        ``address``, ``suffrage``, ``healthy``, ``http``, ...)."""
        return self._run(Operation("peers", "GET", "/peers"))

    def join(self, node_id: str, raft_address: str, *, voter: bool | None = None,
             http_address: str | None = None, replace: bool = False) -> Any:
        """Add the server ``node_id`` listening for Raft at ``raft_address``
        (``host:port``): a nonvoter unless ``voter=True`` (autopilot promotes
        it once healthy). ``http_address`` registers where it serves HTTP;
        ``replace=True`` moves an existing member to ``raft_address``.
        Joining a member again at its address changes nothing. Returns the
        answer (``id``, ``address``, ``suffrage``, ``changed``, ...)."""
        doc: dict[str, Any] = {"id": _text("node_id", node_id), "addr": _text("raft_address", raft_address)}
        if voter is not None:
            doc["voter"] = bool(voter)
        if http_address:
            doc["httpAddr"] = _text("http_address", http_address)
        if replace:
            doc["replace"] = True
        return self._run(Operation(f"join {node_id}", "POST", "/join", json=doc, write=True, admin=True))

    def remove_peer(self, node_id: str) -> Any:
        """Remove the server ``node_id`` from the cluster (NotFound if it is not a member)."""
        return self._run(Operation(f"remove_peer {node_id}", "POST", "/remove-peer",
                                   {"nodeId": _text("node_id", node_id)}, write=True, admin=True))

    def transfer_leadership(self, to: str | None = None) -> Any:
        """Hand leadership to the voter ``to`` (any up-to-date voter if None).
        Returns ``{"transferred": true, "from": ..., "to": ...}``."""
        params = {"to": _text("to", to)} if to is not None else {}
        return self._run(Operation("transfer_leadership", "POST", "/transfer-leadership", params, write=True,
                                   admin=True))
