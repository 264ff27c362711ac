"""hraftd's state machine format on raftkv's SQLite store (``RAFT_FSM=hraftd``).

Theory of operation
-------------------
hraftd (the hashicorp/raft demo store) writes JSON commands into the Raft log,
``{"op":"set","key":"k","value":"v"}`` and ``{"op":"delete","key":"k"}``, and
its snapshot is the JSON object of the whole map. A raftkv node in a cluster
of hraftd nodes must apply the same log and exchange the same snapshots, so:

* :func:`to_hraftd_command` turns the commands raftkv's HTTP side builds
  (``commands.encode_*``) into hraftd's before they are proposed;
* :class:`HraftdKVStore` applies hraftd's commands (a command it cannot
  decode is rejected and changes nothing, where hraftd would panic), writes
  snapshots as hraftd's JSON and restores them.

hraftd's snapshot carries no index: the store is told which index a snapshot
stands for with :meth:`HraftdKVStore.expect_restore` before ``restore``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import BinaryIO

import msgpack

from raftkv.statemachine.commands import OP_DELETE, OP_SET, OP_SET_MANY, CommandError, encode_delete, encode_set
from raftkv.statemachine.kvstore import KVStore, SnapshotFormatError, _connect


def to_hraftd_command(data: bytes) -> bytes:
    """raftkv's command as hraftd's JSON. A multi-key write has no hraftd
    form unless it holds one key."""
    cmd = msgpack.unpackb(data, raw=False)
    if cmd[0] == OP_SET:
        return json.dumps({"op": "set", "key": cmd[1], "value": cmd[2]}, separators=(",", ":")).encode()
    if cmd[0] == OP_DELETE:
        return json.dumps({"op": "delete", "key": cmd[1]}, separators=(",", ":")).encode()
    if cmd[0] == OP_SET_MANY and len(cmd[1]) == 1:
        (key, value), = cmd[1].items()
        return to_hraftd_command(encode_set(key, value))
    raise CommandError("hraftd's commands write one key at a time")


class HraftdKVStore(KVStore):
    """See the module docstring."""

    # hraftd's JSON, so that Go nodes of the cluster can apply raftkv's writes too
    encode_command = staticmethod(to_hraftd_command)

    _restore_index = 0

    def apply(self, index: int, data: bytes) -> object:
        if index <= self.applied_index:
            return None
        try:
            cmd = json.loads(data)
            op, key = cmd["op"], cmd["key"]
            if op == "set" and type(key) is str and type(cmd["value"]) is str:
                return super().apply(index, encode_set(key, cmd["value"]))
            if op == "delete" and type(key) is str:
                return super().apply(index, encode_delete(key))
            error = CommandError(f"unknown hraftd command {op!r}")
        except (ValueError, TypeError, KeyError) as exc:
            error = CommandError(f"undecodable hraftd command: {exc}")
        self.applied_index = index
        return self._reject(index, error)

    def snapshot(self) -> Callable[[object], int]:
        self.commit()
        reader = _connect(self.path)
        reader.execute("BEGIN")

        def persist(writer) -> int:
            # Go's json.Marshal of a map: keys sorted, no spaces
            try:
                total = 0
                sep = b"{"
                for key, value in reader.execute("SELECT k, v FROM kv ORDER BY k"):
                    part = sep + json.dumps(key).encode() + b":" + json.dumps(value).encode()
                    writer.write(part)
                    total += len(part)
                    sep = b","
                tail = b"}" if sep == b"," else b"{}"
                writer.write(tail)
                return total + len(tail)
            finally:
                reader.close()

        return persist

    def expect_restore(self, applied_index: int) -> None:
        """The index the next restored snapshot stands for."""
        self._restore_index = applied_index

    def restore(self, reader: BinaryIO) -> None:
        try:
            state = json.loads(reader.read())
        except ValueError as exc:
            raise SnapshotFormatError(f"not an hraftd snapshot: {exc}") from None
        if not isinstance(state, dict) or not all(type(k) is str and type(v) is str for k, v in state.items()):
            raise SnapshotFormatError("an hraftd snapshot is a JSON object of strings")
        applied_index = self._restore_index
        with self._replacing() as db:
            db.execute("DELETE FROM kv")
            db.executemany("INSERT INTO kv VALUES (?, ?)", state.items())
            db.execute("UPDATE meta SET applied_index=?, keys=?", (applied_index, len(state)))
        self._replaced(applied_index, len(state))
        self._log("INFO", "restored snapshot", [("applied-index", applied_index), ("keys", len(state))])
