"""Which configuration is in force, which is committed, and what a change makes.

Theory of operation: single-server changes (Raft thesis §4.1). A node uses
the newest configuration entry in its log as soon as it is appended,
committed or not (rule 4 of the node); below the log's base the snapshot
remembers it. :class:`Membership` tracks that latest configuration and the
latest *committed* one and recomputes both whenever the log is cut, extended
or committed further. :func:`next_configuration` is the leader's check of one
requested change.
"""

from __future__ import annotations

from typing import NamedTuple

from .configuration import ConfigCommand, Configuration
from .errors import RejectReason
from .log import RaftLog
from .messages import SnapshotMeta


class Membership:
    __slots__ = ("latest", "latest_index", "committed", "committed_index")

    def __init__(self, snapshot: SnapshotMeta) -> None:
        self.latest: Configuration = snapshot.configuration
        self.latest_index = snapshot.configuration_index
        self.committed: Configuration = self.latest
        self.committed_index = self.latest_index

    def recompute(self, log: RaftLog, snapshot: SnapshotMeta, commit_index: int) -> None:
        """Rule 4: the newest configuration entry in the log is in force."""
        entry = log.last_config_entry()
        if entry is not None and entry.index > snapshot.configuration_index:
            self.latest = Configuration.decode(entry.data)
            self.latest_index = entry.index
        else:
            self.latest = snapshot.configuration
            self.latest_index = snapshot.configuration_index
        self.recompute_committed(log, snapshot, commit_index)

    def recompute_committed(self, log: RaftLog, snapshot: SnapshotMeta, commit_index: int) -> None:
        if self.latest_index <= commit_index:
            self.committed = self.latest
            self.committed_index = self.latest_index
            return
        entry = log.last_config_entry(at_or_below=commit_index)
        if entry is not None and entry.index > snapshot.configuration_index:
            self.committed = Configuration.decode(entry.data)
            self.committed_index = entry.index
        else:
            self.committed = snapshot.configuration
            self.committed_index = snapshot.configuration_index

    def appended(self, configuration: Configuration, index: int) -> None:
        """The leader appended a configuration entry: it is in force at once."""
        self.latest = configuration
        self.latest_index = index

    def latest_committed(self, commit_index: int) -> bool:
        return self.latest_index <= commit_index


class RefusedChange(NamedTuple):
    reason: RejectReason
    error: str


def next_configuration(current: Configuration, command: ConfigCommand, server_id: str,
                       address: str, volume: str = "") -> Configuration | RefusedChange:
    """The configuration one change leads to, or why it cannot be made."""
    if command in (ConfigCommand.REMOVE_SERVER, ConfigCommand.DEMOTE_VOTER) and not current.has(server_id):
        return RefusedChange(RejectReason.UNKNOWN_SERVER, f"unknown server {server_id!r}")
    new = current.apply(command, server_id, address, volume)
    if not new.voters:
        return RefusedChange(RejectReason.NO_VOTERS_LEFT, "the change would leave no voters")
    return new


def logged_address(command: ConfigCommand, address: str) -> str:
    """hashicorp logs the address only for the commands that carry one."""
    return address if command in (ConfigCommand.ADD_VOTER, ConfigCommand.ADD_NONVOTER) else ""


class ServerList:
    """Renders a configuration as hashicorp's %+v server list (``[]`` when empty)."""
    __slots__ = ("configuration",)

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration

    def __str__(self) -> str:
        return self.configuration.describe()

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerList) and other.configuration == self.configuration
