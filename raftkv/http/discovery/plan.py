"""What a node waiting for its ``RAFT_BOOTSTRAP_EXPECT`` servers does next:
pure, so every case is unit-tested (tests/http/test_forming_plan.py).

Theory of operation: each empty node polls its seeds (``RAFT_JOIN``) for
what they say of themselves (:class:`Seen`: id, Raft address, volume id,
whether they are in a cluster, and the configuration each would found).
:func:`decide` turns one round of answers into a :class:`Wait`, a
:class:`Join` or a :class:`Found`:

1. A seed already in a cluster is joined, never founded beside: if it
   founded the cluster by this same procedure and its founding
   configuration names this node exactly (id, address, volume), this node
   founds with that very configuration (it is one of the founders, only
   late); otherwise it asks that seed to add it (``/join``).
2. Until exactly N distinct ids are known (this node's own included), it
   waits; more than N is an operator's mistake and it never founds.
3. With N known, the proposal is those N as voters, sorted by id, each with
   its address and volume id. The node founds with it only once every other
   of the N, in the same round, is not in a cluster and proposes the
   identical configuration.

Why two clusters cannot form (docs/disks.md, "A cluster forming
itself"): every configuration any node founds with names the same N ids.
A node founds with its own proposal only after all N have proposed it, and
the ids a node has known never shrink while it runs, so two proposals over
different id sets would each need a server that knew both sets, which is
more than N, and such a server proposes nothing. Two founding
configurations over the same N ids have majorities that overlap, so one
vote per server per term still allows one leader per term across them:
one cluster. They are identical, byte for byte, unless a node restarted
empty in between (a new volume id); then the entry at index 1 differs only
in that server's volume, and the leader treats it as a server that lost its
disk (docs/disks.md). The one way out is a node outside the N with the same
seeds, started before the others formed; hence: start exactly N with
RAFT_BOOTSTRAP_EXPECT=N, and add more later by joining.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from raftkv.raft.configuration import Configuration, Server, Suffrage

__all__ = ["Found", "FormingState", "Join", "Peer", "Seen", "Wait", "configuration_of", "decide",
           "parse_seen", "proposal_json"]


@dataclass(frozen=True, order=True)
class Peer:
    """A server as it describes itself: what a founding configuration records."""
    id: str
    address: str
    volume: str = ""


@dataclass(frozen=True)
class Seen:
    """One seed's answer in a round."""
    seed: str                               # the URL that answered
    peer: Peer
    member: bool = False                    # it has a configuration: in a cluster
    proposal: tuple[Peer, ...] | None = None
    founded: tuple[Peer, ...] | None = None  # what it founded a cluster with, by this procedure


class Wait(NamedTuple):
    reason: str
    error: bool = False  # an operator's mistake, not a matter of time


class Join(NamedTuple):
    seed: str
    reason: str


class Found(NamedTuple):
    servers: tuple[Peer, ...]
    reason: str


Decision = Wait | Join | Found


@dataclass
class FormingState:
    """What this node tells the others about its forming (``GET /_raftkv/discovery``)."""
    expect: int = 0
    proposal: tuple[Peer, ...] | None = None
    founded: tuple[Peer, ...] | None = None
    known: dict[str, Peer] = field(default_factory=dict)


def decide(me: Peer, known: Mapping[str, Peer], answers: Iterable[Seen], expect: int) -> Decision:
    """The next step of ``me``, from every id it has ever known (``known``:
    the caller never drops one) and this round's answers."""
    answers = list(answers)
    members = [a for a in answers if a.member and a.peer.id != me.id]
    for a in members:
        if a.founded is not None and me in a.founded:
            return Found(a.founded, f"{a.peer.id} founded a cluster that names this node")
    if members:
        a = members[0]
        return Join(a.seed, f"{a.peer.id} is already in a cluster")
    ids = set(known) | {me.id}
    if len(ids) > expect:
        return Wait(f"{len(ids)} servers found, more than the {expect} expected "
                    f"({', '.join(sorted(ids))}): not forming a cluster; start exactly {expect} servers "
                    f"with RAFT_BOOTSTRAP_EXPECT={expect}, and join the others once it has formed", error=True)
    if len(ids) < expect:
        return Wait(f"{len(ids)} of {expect} servers found")
    proposal = proposal_of(me, known)
    latest = {a.peer.id: a for a in answers}
    waiting = [p.id for p in proposal if p.id != me.id
               and (p.id not in latest or latest[p.id].proposal != proposal)]
    if waiting:
        return Wait(f"{expect} servers found, waiting for {', '.join(waiting)} to propose the same configuration")
    return Found(proposal, f"all {expect} servers propose the same configuration")


def proposal_of(me: Peer, known: Mapping[str, Peer]) -> tuple[Peer, ...]:
    """The configuration this node proposes: every known server, sorted by id."""
    return tuple(sorted({**known, me.id: me}.values()))


def configuration_of(servers: Iterable[Peer]) -> Configuration:
    """The founding configuration: every server a voter, recorded with its
    volume (the amnesia guard, docs/disks.md)."""
    return Configuration(tuple(Server(p.id, p.address, Suffrage.VOTER, p.volume) for p in servers))


def proposal_json(servers: tuple[Peer, ...] | None) -> list[dict] | None:
    if servers is None:
        return None
    return [{"id": p.id, "address": p.address, "volume": p.volume} for p in servers]


def _peers(doc: Any) -> tuple[Peer, ...] | None:
    if not isinstance(doc, list):
        return None
    out = []
    for item in doc:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("id", "address")):
            raise ValueError(f"malformed server {item!r}")
        out.append(Peer(item["id"], item["address"], str(item.get("volume") or "")))
    return tuple(out)


def parse_seen(seed: str, doc: Any) -> Seen:
    """A seed's ``/_raftkv/discovery`` answer; ValueError if it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not isinstance(doc.get("raft"), str):
        raise ValueError("not a discovery answer")
    return Seen(seed, Peer(doc["id"], doc["raft"], str(doc.get("volume") or "")), bool(doc.get("member")),
                _peers(doc.get("proposal")), _peers(doc.get("founded")))
