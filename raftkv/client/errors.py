"""What a raftkv client call fails with, and the one table that turns an
HTTP answer into it.

Every error is a :class:`RaftkvError`, and every one is either a
:class:`NotApplied` (nothing was done: the call is safe to repeat as it is)
or an :class:`OutcomeUnknown` (a write may have been applied, or may still
be). The kind of failure is a second, independent class:

==========================  ======================================  ===========================
error                       raised when                             safe to repeat
==========================  ======================================  ===========================
``BadRequest``              400, 431: a parameter is wrong           yes (fix it first)
``TooLarge``                413: a key and value over the limit      yes (fix it first)
``Unauthorized``            401/403: the cluster key is missing      yes (fix it first)
                            or wrong
``NotFound``                404: an unknown server (``remove_peer``) yes
``Conflict``                409: a membership change refused         yes
``Unavailable``             503/507 that says ``outcome_unknown:     yes (the client retries it
                            false``, or no node accepted the         itself until the deadline)
                            connection
``TLSError``                a node's certificate is not trusted      yes (fix ``cacert``)
``TimeoutNotApplied``       the deadline passed; nothing applied     yes
``TimeoutOutcomeUnknown``   the deadline passed while a write was    no: check, or repeat an
                            in flight                                idempotent write
``WriteOutcomeUnknown``     the connection broke after a write was   no: likewise
                            sent; 503/507 with ``outcome_unknown:
                            true``
``ServerError``             500 (a bug in raftkv)                    no
==========================  ======================================  ===========================

Both timeouts are :class:`Timeout`; both kinds of 503 are :class:`Unavailable`
or :class:`OutcomeUnknown`. A read changes nothing, so a read never fails
with an outcome unknown but for a :class:`ServerError`.

The mapping follows what raftkv's HTTP API answers (``raftkv/http/api/replies.py``):
400 names the ``param``; 413 adds the ``limit``; 503 says ``outcome_unknown``
and the ``leader`` it knows; 507 is a full disk, with ``outcome_unknown``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadRequest", "Conflict", "NotApplied", "NotFound", "OutcomeUnknown", "RaftkvError", "ServerError",
           "TLSError", "Timeout", "TimeoutNotApplied", "TimeoutOutcomeUnknown", "TooLarge", "Unauthorized",
           "Unavailable", "WriteOutcomeUnknown", "Answer", "error_for"]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: the status, the headers (names in lower case) and the body."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def served_by(self) -> str | None:
        return self.headers.get("x-raftkv-served-by") or None


class RaftkvError(Exception):
    """A client call failed. ``status`` is the HTTP status of the answer (None
    when no answer came), ``body`` its JSON (a dict, or None), ``served_by``
    the id of the node that answered, ``address`` the node asked."""

    outcome_unknown = False

    def __init__(self, message: str, *, status: int | None = None, body: Any = None,
                 served_by: str | None = None, address: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body if isinstance(body, dict) else None
        self.served_by = served_by
        self.address = address


class NotApplied(RaftkvError):
    """Nothing was applied: repeating the call cannot do it twice."""


class OutcomeUnknown(RaftkvError):
    """A write was sent and may have been applied, or may still be: the
    cluster did not say. Read the key (at ``linearizable``) to find out, or
    repeat the write if doing it twice is harmless (a ``set`` of a value
    nobody else writes, a ``delete``)."""

    outcome_unknown = True


class BadRequest(NotApplied):
    """400 (or 431): the request is malformed; ``param`` names the culprit."""

    def __init__(self, message: str, *, param: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.param = param


class TooLarge(BadRequest):
    """413: the key and value are over the cluster's ``HTTP_MAX_BODY``; ``limit`` says it in bytes."""

    def __init__(self, message: str, *, limit: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.limit = limit


class Unauthorized(NotApplied):
    """401: an admin call (join, remove_peer, transfer_leadership) without the
    right ``cluster_key``; 403: a route the node does not serve."""


class NotFound(NotApplied):
    """404: the server named does not exist (a missing key is no error: ``get`` returns None)."""


class Conflict(NotApplied):
    """409: a membership change the cluster refused (it would move a member,
    remove the last voter, put the quorum at risk)."""


class Unavailable(NotApplied):
    """The cluster could not take the call and said nothing was done (503 or
    507 with ``outcome_unknown: false``: no leader, leadership changing, a
    node stopping), or no node accepted the connection. The client retries
    these itself until its deadline, then raises a :class:`Timeout` whose
    ``last`` is the final one."""


class TLSError(NotApplied):
    """A node's TLS certificate is not trusted by ``cacert`` (or the node does
    not speak TLS, or speaks only TLS): a setting to fix, not a failure to retry."""


class WriteOutcomeUnknown(OutcomeUnknown):
    """A write's connection broke after it was sent, or the cluster answered
    503/507 with ``outcome_unknown: true`` (the entry was appended but not
    known to be committed)."""


class ServerError(OutcomeUnknown):
    """500: a bug in raftkv. A write may or may not have been applied."""


class Timeout(RaftkvError):
    """The call's deadline (the client's ``timeout``) passed before the
    cluster gave an answer to keep: every node was down, unreachable or
    without a leader, or the one asked did not answer in time. ``last`` is
    the final failure seen (also the exception's ``__cause__``). It is a
    :class:`TimeoutNotApplied` or a :class:`TimeoutOutcomeUnknown`."""

    def __init__(self, message: str, *, last: BaseException | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.last = last


class TimeoutNotApplied(Timeout, NotApplied):
    """The deadline passed and nothing was applied (a read, or a write that
    no node took)."""


class TimeoutOutcomeUnknown(Timeout, OutcomeUnknown):
    """The deadline passed while a write was in flight: it may have been applied."""


def _message(body: Any, answer: Answer) -> str:
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    text = answer.body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:200] or f"HTTP {answer.status}"


def unavailable_outcome_unknown(body: Any, write: bool) -> bool:
    """Whether a 503/507 leaves a write's outcome unknown: only
    ``outcome_unknown: false`` says nothing was done (raftkv's own leader
    forwarding reads it the same way), and a 503 refusing the request itself
    (``param``: the connection cap) never ran it. A read's outcome is never
    in question."""
    if not write:
        return False
    if not isinstance(body, dict):
        return True
    unknown = body.get("outcome_unknown")
    if unknown is None:
        return "param" not in body
    return bool(unknown)


def error_for(answer: Answer, *, write: bool, address: str | None = None) -> RaftkvError:
    """The error an unsuccessful answer stands for. ``write``: the call would
    change the cluster (a read's outcome is never unknown)."""
    body = answer.json()
    status = answer.status
    kw: dict[str, Any] = {"status": status, "body": body, "served_by": answer.served_by, "address": address}
    message = f"HTTP {status}: {_message(body, answer)}"
    param = body.get("param") if isinstance(body, dict) else None
    if status == 413:
        limit = body.get("limit") if isinstance(body, dict) else None
        return TooLarge(message, param=param, limit=limit, **kw)
    if status in (400, 422, 431):
        return BadRequest(message, param=param, **kw)
    if status in (401, 403):
        return Unauthorized(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 409:
        return Conflict(message, **kw)
    if status in (502, 503, 504, 507):
        if unavailable_outcome_unknown(body, write):
            return WriteOutcomeUnknown(message + " (the write may have been applied)", **kw)
        return Unavailable(message, **kw)
    if status == 408 or 400 <= status < 500:
        # a request the node did not take (408: its head came too slowly)
        return BadRequest(message, param=param, **kw)
    if write:
        return ServerError(message + " (the write may have been applied)", **kw)
    return ServerError(message, **kw)
