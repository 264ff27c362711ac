"""Why the core refused a request.

Theory of operation: every ``Rejected`` effect carries one
:class:`RejectReason`, so callers branch on the reason (map it to an HTTP
status, decide whether to forward to the leader or retry) instead of matching
the human text in ``Rejected.error``, which is for people and may change.
"""

from __future__ import annotations

import enum


class RejectReason(enum.Enum):
    NOT_LEADER = "not_leader"
    """This node does not lead; ``Rejected.leader_id`` names the leader if known."""
    TRANSFER_IN_PROGRESS = "transfer_in_progress"
    """The leader is handing over leadership and takes no new requests."""
    LEADERSHIP_LOST = "leadership_lost"
    """The node stopped leading before the request (a read's confirmation or
    a queued membership change) was done."""
    UNKNOWN_SERVER = "unknown_server"
    """A membership change names a server that is not in the configuration."""
    NO_VOTERS_LEFT = "no_voters_left"
    """A membership change would leave the cluster without a voter."""
    QUORUM_AT_RISK = "quorum_at_risk"
    """A membership change would leave fewer voters that kept their storage
    than a quorum (rule 7): demote or wait for the ones that lost it first."""
    TRANSFER_TIMEOUT = "transfer_timeout"
    """The transfer target did not take over within an election timeout."""
    TRANSFER_TO_SELF = "transfer_to_self"
    """Leadership transfer was asked to target the leader itself."""
    PEER_NOT_FOUND = "peer_not_found"
    """No voter to transfer leadership to (none at all, or the one named is
    not a replicated voter)."""
    NOTHING_TO_SNAPSHOT = "nothing_to_snapshot"
    """Nothing was applied since the last snapshot."""
    RESTORE_NOT_READY = "restore_not_ready"
    """A restore must wait until the leader's first entry of its term and the
    latest configuration change are committed; retrying later succeeds."""
