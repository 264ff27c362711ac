"""What must be durable before a step's messages leave: a rule of :mod:`.rules`.

Theory of operation: at the end of every step that changed what a node keeps
across a crash (its term and vote, its log), the core asks the rule
``persist_before_send`` which of those changes must reach the disk before the
step's messages leave. Whatever the rule leaves out is held back and written
with the node's next step, after the messages: a crash in between loses it,
while its peers may already act on a reply that spoke for it. The core's own
rule writes every change first, so that effects keep the order the package
docstring promises.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import effects as fx
from .messages import Entry, Message

# What the rule can hold back; RestoreSnapshot and CompactLog go with the log.
HARD_STATE = (fx.PersistHardState,)
LOG = (fx.AppendToLog, fx.TruncateLog, fx.CompactLog, fx.RestoreSnapshot)


@dataclass(frozen=True)
class PersistRequest:
    """One step's changes to a node's durable state, and the messages it is
    about to send. ``term_changed``/``vote_changed`` compare with what is
    already on disk."""
    role: str                      # "Follower", "Candidate" or "Leader"
    term: int                      # current_term after the step
    voted_for: str | None          # voted_for after the step
    term_changed: bool
    vote_changed: bool
    appended: tuple[Entry, ...]    # entries added to the log
    log_changed: bool              # entries appended, truncated, compacted or a snapshot installed
    sends: tuple[Message, ...]     # the messages about to leave (heartbeats and replies included)


@dataclass(frozen=True)
class PersistDecision:
    hard_state: bool = True        # term and vote on disk before the messages leave
    log: bool = True               # the log's changes on disk before the messages leave


def persist_before_send(req: PersistRequest) -> PersistDecision:
    """Persistent state is written before responding (Figure 2, "Persistent
    state on all servers ... updated on stable storage before responding to
    RPCs"; §5.1, §5.2, §5.3; thesis §3.8).

    Every message carries the sender's term; a granted vote promises that
    the voter votes for no one else in that term, and a candidate's
    RequestVote carries its vote for itself; a follower's successful
    AppendEntries reply tells the leader its entries are safe there, so the
    leader may count them towards a commit. A crash forgets whatever was
    not yet on disk, and the node, restarted, could vote twice in a term or
    lose an entry a majority was counted for. So: write every change to the
    term, the vote and the log before anything leaves.
    """
    return PersistDecision(hard_state=req.term_changed or req.vote_changed, log=req.log_changed)


def split(rule, role: str, written: tuple[int, str | None], effects: list) -> tuple[list, list]:
    """``effects`` as they may be carried out now, and the persistence effects
    the rule let wait for the node's next step (in their order)."""
    hard = [e for e in effects if type(e) in HARD_STATE]
    log = [e for e in effects if type(e) in LOG]
    if not hard and not log:
        return effects, []
    term, vote = (hard[-1].term, hard[-1].voted_for) if hard else written
    appended = tuple(entry for e in log if type(e) is fx.AppendToLog for entry in e.entries)
    sends = tuple(e.message for e in effects if type(e) is fx.Send)
    decision = rule(PersistRequest(role, term, vote, term != written[0], vote != written[1], appended,
                                   bool(log), sends))
    held = tuple(() if decision.hard_state else HARD_STATE) + tuple(() if decision.log else LOG)
    if not held:
        return effects, []
    return [e for e in effects if type(e) not in held], [e for e in effects if type(e) in held]
