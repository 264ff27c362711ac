"""The simulator's state machine: a dict, fed by the node's executor.

Theory of operation: commands use the simulator's own tiny format (so the
simulator needs no msgpack); :class:`DictStateMachine` is the executor's
``StateMachine`` for a simulated node. Like the rest of a node's memory it
does not survive a crash: a node boots with the state of its last snapshot
and the core re-applies the committed log on top.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.raft.messages import Entry, EntryType

from .invariants import Violation

__all__ = ["NOTHING", "DictStateMachine", "apply_command", "encode_command"]

# a command that changes nothing: a strong read goes through the log as one
NOTHING = b"nop"


def encode_command(key: str, value: str | None) -> bytes:
    return (f"set\x00{key}\x00{value}" if value is not None else f"del\x00{key}").encode()


def apply_command(state: dict, data: bytes) -> None:
    parts = data.decode().split("\x00")
    if parts[0] == "set":
        state[parts[1]] = parts[2]
    elif parts[0] == "del":
        state.pop(parts[1], None)


class DictStateMachine:
    def __init__(self, state: dict | None = None, applied: int = 0, node_id: str = "") -> None:
        self.state: dict = dict(state or {})
        self.applied = applied
        self.node_id = node_id

    def apply(self, entries: Sequence[Entry]) -> list:
        for e in entries:
            if e.index != self.applied + 1:
                raise Violation("Apply order", f"{self.node_id} applied {e.index} after {self.applied}")
            if e.type is EntryType.COMMAND:
                apply_command(self.state, e.data)
            self.applied = e.index
        return [None] * len(entries)

    def restore(self, index: int, state: dict) -> None:
        """Become the state a snapshot at ``index`` holds."""
        self.state = dict(state)
        self.applied = index
