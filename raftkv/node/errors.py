"""Why a request to the node failed, as types the HTTP side maps to status codes."""

from __future__ import annotations

from raftkv.raft.errors import RejectReason

__all__ = ["ApplyTimeout", "BadBackup", "DiskFull", "NotLeaderError", "RejectReason", "RequestError", "ShuttingDown",
           "StorageFailed"]


class RequestError(Exception):
    """A client request failed. ``reason`` says why when the core refused it;
    ``unknown_outcome``: it may still take effect."""

    def __init__(self, message: str, unknown_outcome: bool = False,
                 leader_id: str | None = None, leader_address: str | None = None,
                 reason: RejectReason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.unknown_outcome = unknown_outcome
        self.leader_id = leader_id
        self.leader_address = leader_address
        self.reason = reason


class NotLeaderError(RequestError):
    """This node is not the leader (or is handing leadership over); nothing
    was done, and the (next) leader can take the request."""


class BadBackup(RequestError):
    """An uploaded backup is not a readable raftkv snapshot."""


class ApplyTimeout(RequestError):
    """The request was accepted but did not finish in time."""


class ShuttingDown(RequestError):
    """The node is stopping."""


class StorageFailed(ShuttingDown):
    """The node's volume failed (a write or fsync error) or is gone: the node
    is stopping, and the message names the path and the error. Another
    member can take the request."""


class DiskFull(StorageFailed):
    """The node's volume ran out of space: the message names the file that
    could not be written."""
