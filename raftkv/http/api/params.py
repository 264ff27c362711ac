"""Parameters of HTTP requests: pure functions, unit-tested without a server.

Bad input raises :class:`BadRequest` (400, ``param`` names the culprit) or
:class:`TooLarge` (413); nothing here touches the node.

Input is taken as sent or refused, never repaired: a query, path or JSON
text that is not valid UTF-8 (stray bytes, overlong forms, encoded or
escaped surrogates) is a 400 naming the parameter, because replacing the
bad bytes with U+FFFD would make different keys the same key. JSON bodies
are nested at most :data:`MAX_JSON_DEPTH` levels deep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from raftkv.config.textforms import NODE_ID, NODE_ID_RULE, join_host_port, parse_bool, parse_port, split_host_port
from raftkv.config.values import parse_duration_ms
from raftkv.statemachine.commands import RESERVED_PREFIX

__all__ = ["MAX_JSON_DEPTH", "BadRequest", "JoinRequest", "TooLarge", "check_path", "origin_form",
           "parse_bool_param", "parse_join_json", "parse_join_params", "parse_json_object", "parse_key",
           "parse_key_values", "parse_query", "parse_value", "query_and_body"]

# Deep enough for any document the API takes (the deepest, a fault spec, has
# three levels); json.loads itself would recurse until RecursionError.
MAX_JSON_DEPTH = 32


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


# --- request targets ------------------------------------------------------------

def _unquote_text(raw: bytes) -> str:
    """A query component as text: ``+`` a space, %-escapes decoded, then
    UTF-8, strictly (UnicodeDecodeError otherwise)."""
    if b"%" not in raw and b"+" not in raw and raw.isascii():
        return raw.decode("ascii")
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def _shown(raw: bytes) -> str:
    return raw.decode("ascii", "backslashreplace")


def parse_query(query: bytes | None) -> dict[str, str]:
    """A query string as ``parse_qsl(keep_blank_values=True)`` decodes it,
    the first of repeated names winning (as ``request.query.get`` does), but
    refusing what is not UTF-8 once unescaped: BadRequest naming the
    parameter (or, for a name that is not UTF-8, the name as sent)."""
    if not query:
        return {}
    decoded: dict[str, str] = {}
    if b"%" not in query and b"+" not in query and query.isascii():
        # nothing to unquote: no per-pair work beyond the split
        for pair in query.decode("ascii").split("&"):
            if pair:
                name, _, value = pair.partition("=")
                decoded.setdefault(name, value)
        return decoded
    for pair in query.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = _unquote_text(raw_name)
        except UnicodeDecodeError:
            shown = _shown(raw_name)
            raise BadRequest(shown, f"parameter name {shown} is not valid UTF-8") from None
        try:
            value = _unquote_text(raw_value)
        except UnicodeDecodeError:
            if not name:
                raise BadRequest("query", "a parameter with an empty name is not valid UTF-8") from None
            raise BadRequest(name, f"parameter {name} is not valid UTF-8") from None
        decoded.setdefault(name, value)
    return decoded


def check_path(path: bytes | str) -> None:
    """BadRequest unless the path, %-escapes decoded, is UTF-8 (``path`` as
    sent; a str is taken as aiohttp holds it, undecodable bytes as surrogate
    escapes)."""
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
    if b"%" not in raw and raw.isascii():
        return
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("path", "path is not valid UTF-8") from None


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def origin_form(target: str) -> str:
    """The path and query of a request target (RFC 9112 3.2): an
    absolute-form ``http://host/get?key=k`` becomes ``/get?key=k``; the
    origin-form is returned as it is. Never a scheme or a host: what a
    node forwards is appended to another node's address."""
    if target.startswith("/"):
        return target
    match = _SCHEME.match(target)
    if match is None:
        return "/" + target if target and target != "*" else "/"
    rest = target[match.end():]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
    if cut < 0:
        return "/"
    rest = rest[cut:]
    return rest if rest.startswith("/") else "/" + rest


# --- pure parameter parsing ---------------------------------------------------

def query_and_body(query: Mapping[str, str], body: bytes, content_type: str | None) -> Mapping[str, str]:
    """Query parameters, plus those of a form or JSON body (the body's win).
    ``content_type`` is the body's media type, None when the request named
    none. Without a body, the query itself."""
    if not body:
        return query
    params: dict[str, str] = dict(query)
    # JSON when it says so, or when it looks like it and says nothing at all;
    # text/plain is always a raw value, even one that happens to start with "{".
    if content_type == "application/json" or (content_type is None and body.lstrip()[:1] == b"{"):
        doc = parse_json_object(body)
        for k, v in doc.items():
            if isinstance(v, str):
                params[k] = v
            elif isinstance(v, bool):
                params[k] = "true" if v else "false"
            elif isinstance(v, int):
                params[k] = str(v)
            else:
                raise BadRequest(k, f"invalid {k}: expected a string")
    elif content_type == "application/x-www-form-urlencoded":
        params.update(parse_query(body))  # a form is a query string (strict UTF-8, the first of a name wins)
    elif "value" not in params:
        # a raw body is the value: curl --data-binary @file 'host/set?key=k'
        try:
            params["value"] = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("value", "body is not valid UTF-8") from None
    return params



def parse_bool_param(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return parse_bool(raw, empty=True)  # ?stale  alone means stale=true
    except ValueError:
        raise BadRequest(name, f"invalid boolean for parameter {name}: {raw!r} (use true or false)") from None


READ_LEVELS = ("none", "weak", "linearizable", "lease", "strong")


def parse_read_level(params: Mapping[str, str]) -> tuple[str, int | None]:
    """A read's ``level`` (rqlite's names; ``stale=true`` is ``none``) and
    its ``freshness`` in ms (``none`` only: refuse if no leader was heard
    from within it)."""
    level = params.get("level")
    if level is None:
        level = "none" if parse_bool_param(params, "stale", False) else "linearizable"
    elif level not in READ_LEVELS:
        raise BadRequest("level", f"unknown read level {level!r}: one of {', '.join(READ_LEVELS)}")
    raw = params.get("freshness")
    if raw is None:
        return level, None
    try:
        freshness = parse_duration_ms(raw)
    except ValueError:
        raise BadRequest("freshness", f"invalid duration for freshness: {raw!r} (for example 1s or 500ms)") from None
    if level != "none":
        raise BadRequest("freshness", "freshness applies to level=none reads only")
    return level, freshness


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


# a \\u escape of a UTF-16 surrogate, the only way to a lone one in valid UTF-8 text
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json_object(body: bytes, name: str = "body") -> dict:
    """A JSON object: UTF-8 (json.loads alone lets encoded surrogates
    through), nested at most :data:`MAX_JSON_DEPTH` levels, and no string
    holding a lone surrogate (``"\\ud800"``: it has no UTF-8 form, so it can
    be neither stored nor answered). BadRequest names the top-level field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(name, f"invalid JSON body: not valid UTF-8 (at byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise BadRequest(name, f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest(name, f"invalid JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(name, "invalid JSON body: expected an object")
    # both checks walk the document: only when the text says they may fail
    deep = text.count("{") + text.count("[") > MAX_JSON_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if deep or surrogates:
        for key, value in doc.items():
            if not _is_text(key):
                shown = _escaped(key)
                raise BadRequest(shown, f"invalid JSON body: field name {shown} is not valid UTF-8 "
                                        "(it holds a lone surrogate)")
            _check_json(value, 2, key, name)
    return doc


def _is_text(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_json(value: object, depth: int, field: str, name: str) -> None:
    if value.__class__ is str:
        if not _is_text(value):
            raise BadRequest(field, f"invalid JSON body: field {field} is not valid UTF-8 "
                                    "(it holds a lone surrogate)")
        return
    if isinstance(value, (dict, list)):
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(name, f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not _is_text(key):
                    raise BadRequest(field, f"invalid JSON body: a field name inside {field} is not valid "
                                            "UTF-8 (it holds a lone surrogate)")
                _check_json(item, depth + 1, field, name)
        else:
            for item in value:
                _check_json(item, depth + 1, field, name)


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
