"""The commands raftkv's state machine applies, as log entries carry them.

Commands are msgpack arrays built by the ``encode_*`` functions (the HTTP
side builds them; :mod:`.kvstore` applies them):

    ["set", key, value]     -> None
    ["del", key]            -> bool (whether the key existed)
    ["setm", {key: value}]  -> int (number of keys written)

:func:`describe_command` is what a log line shows of one. Keys under
``RESERVED_PREFIX`` are raftkv's own (the HTTP-address registry).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgpack

__all__ = ["OP_DELETE", "OP_SET", "OP_SET_MANY", "RESERVED_PREFIX", "CommandError", "describe_command",
           "encode_delete", "encode_set", "encode_set_many"]

OP_SET = "set"
OP_DELETE = "del"
OP_SET_MANY = "setm"

RESERVED_PREFIX = "\x00raftkv/"


class CommandError(Exception):
    """A command that cannot be applied (malformed or of the wrong types)."""


def _check_str(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError("%s must be str, got %s" % (what, type(value).__name__))


def encode_set(key: str, value: str) -> bytes:
    _check_str("key", key)
    _check_str("value", value)
    return msgpack.packb([OP_SET, key, value], use_bin_type=True)


def encode_delete(key: str) -> bytes:
    _check_str("key", key)
    return msgpack.packb([OP_DELETE, key], use_bin_type=True)


def encode_set_many(mapping: Mapping[str, str]) -> bytes:
    for key, value in mapping.items():
        _check_str("key", key)
        _check_str("value", value)
    return msgpack.packb([OP_SET_MANY, dict(mapping)], use_bin_type=True)


def describe_command(data: bytes) -> list[tuple[str, object]]:
    """The pairs a log line shows for an applied command: the operation and
    its key (or how many keys), and the value's size -- never the value,
    which may be megabytes or a secret. raftkv's own writes (keys under
    RESERVED_PREFIX) say what they are instead and carry ``internal=true``,
    so a reader of the log, or the dashboard, can tell them from the user's:
    ``op=register-http node=n2 http=127.0.0.1:8001 internal=true``."""
    try:
        cmd = msgpack.unpackb(data, raw=False, use_list=True)
        op = cmd[0]
        if op in (OP_SET, OP_DELETE) and isinstance(cmd[1], str) and cmd[1].startswith(RESERVED_PREFIX):
            return _describe_internal(op, cmd)
        if op == OP_SET:
            return [("op", op), ("key", cmd[1]), ("size", len(cmd[2].encode()))]
        if op == OP_DELETE:
            return [("op", op), ("key", cmd[1])]
        if op == OP_SET_MANY:
            return [("op", op), ("keys", len(cmd[1]))]
    except Exception:  # a malformed command was rejected (and logged) by apply
        pass
    return [("op", "unknown")]


# The HTTP-address registry's keys (raftkv/http/api/registry.py): RESERVED_PREFIX
# + "http/" + node id, the value the node's HTTP address -- an address every
# member serves on, not user data, so the line may show it.
_HTTP_REGISTRY = RESERVED_PREFIX + "http/"


def _describe_internal(op: str, cmd: list) -> list[tuple[str, object]]:
    key: str = cmd[1]
    if key.startswith(_HTTP_REGISTRY):
        node = key[len(_HTTP_REGISTRY):]
        if op == OP_SET:
            address = [("http", cmd[2])] if isinstance(cmd[2], str) else []
            return [("op", "register-http"), ("node", node), *address, ("internal", True)]
        return [("op", "unregister-http"), ("node", node), ("internal", True)]
    return [("op", op), ("key", key), ("internal", True)]
