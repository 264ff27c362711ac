"""Parameters of HTTP requests: pure functions, unit-tested without a server.

Bad input raises :class:`BadRequest` (400, ``param`` names the culprit) or
:class:`TooLarge` (413); nothing here touches the node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from raftkv.fsm import RESERVED_PREFIX
from raftkv.textforms import NODE_ID, NODE_ID_RULE, join_host_port, parse_bool, parse_port, split_host_port

__all__ = ["BadRequest", "JoinRequest", "TooLarge", "parse_bool_param", "parse_join_json",
           "parse_join_params", "parse_json_object", "parse_key", "parse_key_values", "parse_value"]


# --- errors -------------------------------------------------------------------

class BadRequest(Exception):
    """400: a parameter is missing or malformed; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


class TooLarge(Exception):
    """413: a value or body over the configured limit."""

    def __init__(self, param: str, size: int, limit: int) -> None:
        super().__init__(f"{param} is {size} bytes, over the limit of {limit} bytes")
        self.param = param
        self.size = size
        self.limit = limit


# --- pure parameter parsing ---------------------------------------------------



def parse_bool_param(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return parse_bool(raw, empty=True)  # ?stale  alone means stale=true
    except ValueError:
        raise BadRequest(name, f"invalid boolean for parameter {name}: {raw!r} (use true or false)") from None


def parse_key(params: Mapping[str, str], name: str = "key") -> str:
    key = params.get(name)
    if key is None:
        raise BadRequest(name, f"missing parameter: {name}")
    if key == "":
        raise BadRequest(name, f"empty parameter: {name}")
    if key.startswith(RESERVED_PREFIX):
        raise BadRequest(name, f"keys starting with {RESERVED_PREFIX!r} are reserved for raftkv")
    return key


def parse_value(params: Mapping[str, str], limit: int, key: str = "", name: str = "value") -> str:
    value = params.get(name)
    if value is None:
        raise BadRequest(name, f"missing parameter: {name}")
    size = len(value.encode("utf-8", "surrogatepass")) + len(key.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise TooLarge(name, size, limit)
    return value


def parse_node_id(raw: str | None, name: str = "nodeId") -> str:
    if raw is None:
        raise BadRequest(name, f"missing parameter: {name}")
    node_id = raw.strip()
    if not node_id:
        raise BadRequest(name, f"empty parameter: {name}")
    if not NODE_ID.fullmatch(node_id):
        raise BadRequest(name, f"invalid {name} {raw!r}: use {NODE_ID_RULE}")
    return node_id


def _parse_port(raw: str, name: str) -> int:
    try:
        return parse_port(raw)
    except ValueError:
        raise BadRequest(name, f"invalid {name} {raw!r}: must be a number between 1 and 65535") from None


def parse_host_port(raw: str, name: str) -> str:
    try:
        host, port = split_host_port(raw)
    except ValueError:
        host = port = ""
    if not host or not port:
        raise BadRequest(name, f"invalid {name} {raw!r}: expected host:port")
    return join_host_port(host, _parse_port(port, name))


@dataclass(frozen=True)
class JoinRequest:
    id: str
    address: str
    voter: bool = False
    http: str | None = None


def parse_join_params(params: Mapping[str, str], remote_host: str | None) -> JoinRequest:
    """``/join?nodeId=n2&raftPort=9001[&raftAddr=H:P][&voter=false][&httpAddr=H:P]``;
    the host defaults to the caller's IP, as in the seed demo."""
    node_id = parse_node_id(params.get("nodeId", params.get("id")))
    raft_addr = params.get("raftAddr", params.get("addr"))
    if raft_addr is not None and raft_addr.strip():
        address = parse_host_port(raft_addr, "raftAddr")
    else:
        port_raw = params.get("raftPort")
        if port_raw is None or not port_raw.strip():
            raise BadRequest("raftPort", "missing parameter: raftPort (or raftAddr=host:port)")
        port = _parse_port(port_raw, "raftPort")
        if not remote_host:
            raise BadRequest("raftAddr", "cannot tell the caller's address; pass raftAddr=host:port")
        address = join_host_port(remote_host, port)
    voter = parse_bool_param(params, "voter", False)
    http = params.get("httpAddr")
    http = parse_host_port(http, "httpAddr") if http else None
    return JoinRequest(node_id, address, voter, http)


def parse_json_object(body: bytes, name: str = "body") -> dict:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(name, f"invalid JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(name, "invalid JSON body: expected an object")
    return doc


def parse_join_json(body: bytes, remote_host: str | None) -> JoinRequest:
    """hraftd style: ``{"id": "n2", "addr": "127.0.0.1:9001"}`` (plus
    optional ``voter`` and ``httpAddr``)."""
    doc = parse_json_object(body)
    params: dict[str, str] = {}
    for src, dst in (("id", "nodeId"), ("nodeId", "nodeId"), ("addr", "raftAddr"),
                     ("raftAddr", "raftAddr"), ("raftPort", "raftPort"), ("voter", "voter"),
                     ("httpAddr", "httpAddr"), ("http", "httpAddr")):
        if src in doc and doc[src] is not None:
            value = doc[src]
            if dst == "voter" and isinstance(value, bool):
                value = "true" if value else "false"
            elif dst == "raftPort" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            elif not isinstance(value, str):
                raise BadRequest(src, f"invalid {src}: expected a string")
            params[dst] = value
    if "nodeId" not in params:
        raise BadRequest("id", "missing field: id")
    return parse_join_params(params, remote_host)


def parse_key_values(body: bytes, limit: int) -> dict[str, str]:
    """hraftd ``POST /key`` body: a JSON object of string keys to string values."""
    doc = parse_json_object(body)
    if not doc:
        raise BadRequest("body", "body has no keys")
    for key, value in doc.items():
        if key == "":
            raise BadRequest("body", "empty key in body")
        if key.startswith(RESERVED_PREFIX):
            raise BadRequest(key, f"keys starting with {RESERVED_PREFIX!r} are reserved for raftkv")
        if not isinstance(value, str):
            raise BadRequest(key, f"value of {key!r} must be a string")
        size = len(key.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise TooLarge(key, size, limit)
    return doc
