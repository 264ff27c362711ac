"""Cluster membership: servers, their suffrage, and configuration changes.

Theory of operation: a :class:`Configuration` is an immutable tuple of
:class:`Server`. Changes are single-server (Raft thesis §4.1): a leader appends
one configuration entry at a time and a node uses the newest configuration in
its log as soon as it is appended, committed or not. The encoding is JSON so
that the core stays within the standard library.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass


class Suffrage(enum.Enum):
    VOTER = "Voter"
    NONVOTER = "Nonvoter"

    def __str__(self) -> str:
        return self.value


class ConfigCommand(enum.Enum):
    ADD_VOTER = "AddVoter"
    ADD_NONVOTER = "AddNonvoter"
    DEMOTE_VOTER = "DemoteVoter"
    REMOVE_SERVER = "RemoveServer"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    address: str
    suffrage: Suffrage = Suffrage.VOTER
    # The identity of the volume this voter was admitted with (the amnesia
    # guard): a voter answering from another volume lost what it promised.
    # Empty when unknown (a voter added directly, hashicorp's protocol).
    volume: str = ""

    @property
    def is_voter(self) -> bool:
        return self.suffrage is Suffrage.VOTER

    def __str__(self) -> str:
        # hashicorp prints a Server with %v: {Voter n2 127.0.0.1:9001}
        return "{%s %s %s}" % (self.suffrage.value, self.id, self.address)

    def to_dict(self) -> dict:
        out = {"id": self.id, "address": self.address, "suffrage": self.suffrage.value}
        if self.volume:
            out["volume"] = self.volume
        return out


@dataclass(frozen=True, slots=True)
class Configuration:
    servers: tuple[Server, ...] = ()

    def get(self, server_id: str) -> Server | None:
        for server in self.servers:
            if server.id == server_id:
                return server
        return None

    def has(self, server_id: str) -> bool:
        return self.get(server_id) is not None

    def is_voter(self, server_id: str) -> bool:
        server = self.get(server_id)
        return server is not None and server.is_voter

    @property
    def voters(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.servers if s.is_voter)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.servers)

    def describe(self) -> str:
        # hashicorp prints a server list with %+v
        return "[" + " ".join(
            "{Suffrage:%s ID:%s Address:%s}" % (s.suffrage.value, s.id, s.address)
            for s in self.servers
        ) + "]"

    def apply(self, command: ConfigCommand, server_id: str, address: str, volume: str = "") -> "Configuration":
        """The configuration after one change (hashicorp's nextConfiguration).
        ``volume``, when known, is the server's volume identity: it is
        recorded when the server becomes a voter."""
        servers = list(self.servers)
        existing = self.get(server_id)
        if command is ConfigCommand.ADD_VOTER:
            new = Server(server_id, address or (existing.address if existing else ""), Suffrage.VOTER,
                         volume or (existing.volume if existing else ""))
            if existing is None:
                servers.append(new)
            else:
                servers[servers.index(existing)] = new
        elif command is ConfigCommand.ADD_NONVOTER:
            if existing is None:
                servers.append(Server(server_id, address, Suffrage.NONVOTER, volume))
            else:
                # hashicorp keeps a voter a voter; only the address can change
                servers[servers.index(existing)] = Server(server_id, address or existing.address,
                                                          existing.suffrage, existing.volume)
        elif command is ConfigCommand.DEMOTE_VOTER:
            if existing is not None:
                servers[servers.index(existing)] = Server(server_id, existing.address, Suffrage.NONVOTER,
                                                          volume or existing.volume)
        elif command is ConfigCommand.REMOVE_SERVER:
            servers = [s for s in servers if s.id != server_id]
        return Configuration(tuple(servers))

    def encode(self) -> bytes:
        return json.dumps([[s.id, s.address, s.suffrage.value, s.volume] if s.volume
                           else [s.id, s.address, s.suffrage.value] for s in self.servers]).encode()

    @classmethod
    def decode(cls, data: bytes) -> "Configuration":
        # three fields, or four with the volume identity
        return cls(tuple(Server(item[0], item[1], Suffrage(item[2]), item[3] if len(item) > 3 else "")
                         for item in json.loads(data)))
