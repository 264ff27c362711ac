"""The HTTP API (DESIGN §5): aiohttp, embedded in the node's own event loop.

Theory of operation
-------------------
Handlers are thin: parse and validate parameters with the pure ``parse_*``
functions below (unit-tested without a server), then either answer locally
(``/status``, stale reads, ``/snapshot``) or go through :func:`on_leader`:

* on the leader, run the operation (propose / ReadIndex / membership change)
  and answer once it is committed and applied;
* on a follower, forward the request unchanged to the leader's HTTP address
  (from the replicated registry, see :mod:`raftkv.server`) and relay the
  answer. The forwarded copy carries ``X-Raftkv-Forwarded-By`` so a node
  that is asked as leader but is not one any more answers 503 instead of
  bouncing the request around, and ``X-Forwarded-For`` so ``/join`` still
  sees the joining node's own IP;
* with no leader known, wait for one (a few election timeouts) before
  answering 503.

Every answer is JSON and names the node that served it: the
``X-Raftkv-Served-By`` header always, and a ``served_by`` key where the body
is not a user's key/value map. Bad input is 400 with ``param`` naming the
culprit; an absent key 404; a body or value over ``HTTP_MAX_BODY`` 413; no
leader or a timeout 503 with ``outcome_unknown`` saying whether the write may
still happen. Nothing a client sends produces a 500: a 500 means a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

from . import hclog
from .fsm import encode_delete, encode_set, encode_set_many
from .raft.configuration import ConfigCommand
from .raft.node import LEADER
from .server import (RESERVED_PREFIX, ApplyTimeout, BadBackup, NotLeaderError, RaftServer, RequestError)

__all__ = ["APP_SERVER", "BadRequest", "JoinRequest", "TooLarge", "create_app", "parse_bool_param",
           "parse_join_json", "parse_join_params", "parse_key", "parse_value", "start_api"]

APP_SERVER: web.AppKey[RaftServer] = web.AppKey("server", RaftServer)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
SERVED_BY = "X-Raftkv-Served-By"
FORWARDED_BY = "X-Raftkv-Forwarded-By"
LOGGER = "http"


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


class _Answer(Exception):
    """An early answer with a specific status (404 unknown server, 409 ...)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body


# --- pure parameter parsing ---------------------------------------------------

_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def parse_bool_param(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value == "":
        return True  # ?stale  alone means stale=true
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(name, f"invalid boolean for parameter {name}: {raw!r} (use true or false)")


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


def _parse_node_id(raw: str | None, name: str = "nodeId") -> str:
    if raw is None:
        raise BadRequest(name, f"missing parameter: {name}")
    node_id = raw.strip()
    if not node_id:
        raise BadRequest(name, f"empty parameter: {name}")
    if not _NODE_ID.fullmatch(node_id):
        raise BadRequest(name, f"invalid {name} {raw!r}: use letters, digits, '.', '_', '-' (up to 64)")
    return node_id


def _parse_port(raw: str, name: str) -> int:
    text = raw.strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadRequest(name, f"invalid {name} {raw!r}: must be a number between 1 and 65535")
    return int(text)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_host_port(raw: str, name: str) -> str:
    text = raw.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
    if not host or not port or any(c.isspace() or c in "/?#@" for c in host):
        raise BadRequest(name, f"invalid {name} {raw!r}: expected host:port")
    return _join_host_port(host, _parse_port(port, name))


@dataclass(frozen=True)
class JoinRequest:
    id: str
    address: str
    voter: bool = False
    http: str | None = None


def parse_join_params(params: Mapping[str, str], remote_host: str | None) -> JoinRequest:
    """``/join?nodeId=n2&raftPort=9001[&raftAddr=H:P][&voter=false][&httpAddr=H:P]``;
    the host defaults to the caller's IP, as in the seed demo."""
    node_id = _parse_node_id(params.get("nodeId", params.get("id")))
    raft_addr = params.get("raftAddr", params.get("addr"))
    if raft_addr is not None and raft_addr.strip():
        address = _parse_host_port(raft_addr, "raftAddr")
    else:
        port_raw = params.get("raftPort")
        if port_raw is None or not port_raw.strip():
            raise BadRequest("raftPort", "missing parameter: raftPort (or raftAddr=host:port)")
        port = _parse_port(port_raw, "raftPort")
        if not remote_host:
            raise BadRequest("raftAddr", "cannot tell the caller's address; pass raftAddr=host:port")
        address = _join_host_port(remote_host, port)
    voter = parse_bool_param(params, "voter", False)
    http = params.get("httpAddr")
    http = _parse_host_port(http, "httpAddr") if http else None
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


# --- request plumbing -----------------------------------------------------------

def _server(request: web.Request) -> RaftServer:
    return request.app[APP_SERVER]


# One encoder for every answer: json.dumps(..., ensure_ascii=False) would
# build a new JSONEncoder (and C encoder) per call, on the path of every
# request. Answers are plain trees of dicts, lists, strings and numbers.
def _make_json_encoder():
    from json import encoder as _je
    if _je.c_make_encoder is None:
        return json.JSONEncoder(ensure_ascii=False).encode
    default = json.JSONEncoder().default
    c_encode = _je.c_make_encoder(None, default, _je.encode_basestring, None, ": ", ", ",
                                  False, False, True)
    return lambda obj: "".join(c_encode(obj, 0))


_encode_json = _make_json_encoder()
_JSON_TYPE = "application/json; charset=utf-8"


def _json(server: RaftServer, body: Any, status: int = 200, served_by: bool = True) -> web.Response:
    if served_by and isinstance(body, dict):
        body = {**body, "served_by": server.id}
    return web.Response(body=(_encode_json(body) + "\n").encode("utf-8"), status=status,
                        headers={"Content-Type": _JSON_TYPE, SERVED_BY: server.id})


def _unavailable(server: RaftServer, message: str, unknown: bool) -> web.Response:
    node = server.node
    leader = None
    if node.leader_id:
        leader = {"id": node.leader_id, "address": node.leader_address or "",
                  "http": server.http_address_of(node.leader_id)}
    return _json(server, {"error": message, "outcome_unknown": unknown, "leader": leader}, 503)


def client_host(request: web.Request) -> str | None:
    """The caller's IP; for a request forwarded by a peer, the original caller's."""
    if FORWARDED_BY in request.headers:
        xff = request.headers.get("X-Forwarded-For", "")
        first = xff.split(",")[0].strip()
        if first:
            return first
    return request.remote


async def _body(request: web.Request) -> bytes:
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge("body", request.content_length, limit)
    return await request.read()


async def _params(request: web.Request) -> dict[str, str]:
    """Query parameters, plus those of a form or JSON body (body wins)."""
    params: dict[str, str] = dict(request.query)
    if request.method in ("GET", "HEAD") or not request.can_read_body:
        return params
    body = await _body(request)
    if not body:
        return params
    ctype = request.content_type
    # JSON when it says so, or when it looks like it and says nothing at all
    # (aiohttp reports a missing Content-Type as octet-stream); text/plain is
    # always a raw value, even one that happens to start with "{".
    if ctype == "application/json" or ("Content-Type" not in request.headers
                                       and body.lstrip()[:1] == b"{"):
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
    elif ctype == "application/x-www-form-urlencoded":
        try:
            from urllib.parse import parse_qsl
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise BadRequest("body", "form body is not valid UTF-8") from None
        params.update(pairs)
    elif "value" not in params:
        # a raw body is the value: curl --data-binary @file 'host/set?key=k'
        try:
            params["value"] = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("value", "body is not valid UTF-8") from None
    return params


def _leader_wait(server: RaftServer) -> float:
    s = server.settings
    return min(s.apply_timeout, max(3000, 3 * s.heartbeat_timeout + 2 * s.election_timeout)) / 1000


async def on_leader(request: web.Request, local: Callable[[], Awaitable[web.StreamResponse]],
                    write: bool) -> web.StreamResponse:
    """Run ``local`` if this node leads; else forward to the leader. With no
    leader known, or a leader that cannot be reached or says it no longer
    leads, wait for the next one (up to a few election timeouts) and retry:
    those attempts changed nothing, so a retry cannot apply a write twice."""
    server = _server(request)
    loop = server.loop  # not asyncio.get_running_loop(): a getpid() per call on Python 3.11
    deadline = loop.time() + _leader_wait(server)
    forwarded = FORWARDED_BY in request.headers
    last: web.StreamResponse | None = None
    while True:
        node = server.node
        if node.role == LEADER:
            try:
                return await local()
            except NotLeaderError:
                pass  # lost leadership before the request reached the core
        elif forwarded:
            return _unavailable(server, "node is not the leader", False)
        else:
            leader_http = server.leader_http()
            if leader_http:
                last, retry = await _forward(request, server, leader_http, write, quiet=last is not None)
                if not retry:
                    return last
        remaining = deadline - loop.time()
        if remaining <= 0:
            if last is not None:
                return last
            if node.leader_id:
                return _unavailable(server, f"the HTTP address of leader {node.leader_id} is not known yet",
                                    False)
            return _unavailable(server, "no leader", False)
        await server.wait_state_change(min(remaining, 0.05))


async def _forward(request: web.Request, server: RaftServer, leader_http: str, write: bool,
                   quiet: bool = False) -> tuple[web.StreamResponse, bool]:
    """Relay the request to the leader. Returns the answer and whether it is
    safe and useful to retry (nothing was done, a new leader may help)."""
    body = await _body(request)
    headers = {FORWARDED_BY: server.id, "X-Forwarded-For": client_host(request) or ""}
    if request.headers.get("Authorization"):
        headers["Authorization"] = request.headers["Authorization"]
    if request.headers.get("Content-Type"):
        headers["Content-Type"] = request.headers["Content-Type"]
    url = URL(f"http://{leader_http}{request.raw_path}", encoded=True)
    try:
        async with server.http_client.request(request.method, url, data=body or None, headers=headers,
                                              allow_redirects=False) as resp:
            data = await resp.read()
            out = {SERVED_BY: resp.headers.get(SERVED_BY, "")}
            answer = web.Response(body=data, status=resp.status, headers=out,
                                  content_type=resp.content_type or "application/json")
            retry = False
            if resp.status == 503:
                try:
                    retry = json.loads(data).get("outcome_unknown") is False
                except (ValueError, AttributeError):
                    retry = False
            return answer, retry
    except aiohttp.ClientConnectorError as exc:
        # never connected: the leader is gone; an election will name another
        hclog.emit("DEBUG" if quiet else "WARN", LOGGER, "failed to forward request to leader",
                   [("leader", leader_http), ("error", str(exc))])
        return _unavailable(server, f"leader unreachable: {exc}", False), True
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        hclog.emit("WARN", LOGGER, "failed to forward request to leader",
                   [("leader", leader_http), ("error", str(exc) or type(exc).__name__)])
        return _unavailable(server, f"forwarding to the leader failed: {exc or type(exc).__name__}",
                            write), not write


# --- middleware -------------------------------------------------------------------

_CLIENT_ERRORS = {
    "cannot find peer": 400,
    "cannot transfer leadership to itself": 400,
    "unknown server": 404,
    "the change would leave no voters": 409,
    "nothing new to snapshot": 409,
}


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    server = _server(request)
    try:
        return await handler(request)
    except BadRequest as exc:
        return _json(server, {"error": exc.message, "param": exc.param}, 400)
    except TooLarge as exc:
        return _json(server, {"error": str(exc), "param": exc.param, "limit": exc.limit}, 413)
    except _Answer as exc:
        return _json(server, exc.body, exc.status)
    except ApplyTimeout as exc:
        return _unavailable(server, exc.message, exc.unknown_outcome)
    except BadBackup as exc:
        return _json(server, {"error": exc.message, "param": "body"}, 400)
    except RequestError as exc:
        for prefix, status in _CLIENT_ERRORS.items():
            if exc.message.startswith(prefix):
                return _json(server, {"error": exc.message}, status)
        return _unavailable(server, exc.message, exc.unknown_outcome)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            limit = request.app[MAX_BODY]
            return _json(server, {"error": f"request body over the limit of {limit} bytes",
                                  "param": "body", "limit": limit}, 413)
        return _json(server, {"error": (exc.reason or "error").lower()}, exc.status)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        hclog.emit("ERROR", LOGGER, "internal error serving request",
                   [("method", request.method), ("path", request.path),
                    ("error", f"{type(exc).__name__}: {exc}"), ("trace", traceback.format_exc())])
        return _json(server, {"error": f"internal error: {type(exc).__name__}"}, 500)


# --- handlers ---------------------------------------------------------------------

async def handle_set(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    params = await _params(request)
    key = parse_key(params)
    value = parse_value(params, request.app[MAX_BODY], key)

    async def local():
        index, _ = await server.propose(encode_set(key, value))
        return _json(server, {"key": key, "value": value, "index": index})
    return await on_leader(request, local, write=True)


async def _read(request: web.Request, key: str, shape) -> web.StreamResponse:
    server = _server(request)
    stale = parse_bool_param(request.query, "stale", False)

    def answer():
        value = server.kv.get(key)
        if value is None:
            return _json(server, {"error": "key not found", "key": key}, 404)
        return shape(server, key, value)
    if stale:
        return answer()

    async def local():
        try:
            await server.read_barrier()
        except (NotLeaderError, ApplyTimeout):
            raise
        except RequestError as exc:
            # leadership was lost while confirming the read: nothing was
            # done, so let on_leader try the next leader
            raise NotLeaderError(exc.message, False, exc.leader_id, exc.leader_address) from None
        return answer()
    return await on_leader(request, local, write=False)


async def handle_get(request: web.Request) -> web.StreamResponse:
    key = parse_key(request.query)
    return await _read(request, key, lambda s, k, v: _json(s, {"key": k, "value": v}))


async def _delete(request: web.Request, key: str) -> web.StreamResponse:
    server = _server(request)

    async def local():
        index, removed = await server.propose(encode_delete(key))
        return _json(server, {"key": key, "removed": bool(removed), "index": index})
    return await on_leader(request, local, write=True)


async def handle_remove(request: web.Request) -> web.StreamResponse:
    params = await _params(request)
    return await _delete(request, parse_key(params))


async def handle_key_post(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    body = await _body(request)
    if not body.strip():
        raise BadRequest("body", "missing JSON body of keys and values")
    mapping = parse_key_values(body, request.app[MAX_BODY])

    async def local():
        index, count = await server.propose(encode_set_many(mapping))
        return _json(server, {"keys": count, "index": index})
    return await on_leader(request, local, write=True)


def _key_from_path(request: web.Request) -> str:
    return parse_key({"key": request.match_info["key"]})


async def handle_key_get(request: web.Request) -> web.StreamResponse:
    key = _key_from_path(request)
    return await _read(request, key, lambda s, k, v: _json(s, {k: v}, served_by=False))


async def handle_key_delete(request: web.Request) -> web.StreamResponse:
    return await _delete(request, _key_from_path(request))


async def handle_join(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    host = client_host(request)
    join = None
    if request.method == "POST" and request.can_read_body:
        body = await _body(request)
        if body.strip() and (request.content_type == "application/json" or body.lstrip()[:1] in (b"{", b"[")):
            join = parse_join_json(body, host)
        elif body.strip():
            params = await _params_from(request, body)
            join = parse_join_params(params, host)
    if join is None:
        join = parse_join_params(request.query, host)

    async def local():
        node = server.node
        conf = node.configuration
        existing = conf.get(join.id)
        if existing is not None and existing.address == join.address and (existing.is_voter or not join.voter):
            await _register_quietly(server, join)
            return _json(server, {"id": existing.id, "address": existing.address,
                                  "suffrage": existing.suffrage.value, "changed": False})
        clash = next((s for s in conf.servers if s.address == join.address and s.id != join.id), None)
        if clash is not None:
            raise _Answer(409, {"error": f"address {join.address} is already used by server {clash.id}; "
                                         f"remove it first (POST /remove-peer?nodeId={clash.id})",
                                "param": "raftAddr"})
        command = ConfigCommand.ADD_VOTER if join.voter else ConfigCommand.ADD_NONVOTER
        hclog.emit("INFO", LOGGER, "join request", [("id", join.id), ("address", join.address),
                                                   ("command", str(command))])
        index = await server.change_membership(command, join.id, join.address)
        await _register_quietly(server, join)
        now = server.node.configuration.get(join.id)
        suffrage = now.suffrage.value if now else ("Voter" if join.voter else "Nonvoter")
        return _json(server, {"id": join.id, "address": join.address, "suffrage": suffrage,
                              "index": index, "changed": True})
    return await on_leader(request, local, write=True)


async def _params_from(request: web.Request, body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl
    params = dict(request.query)
    try:
        params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("body", "form body is not valid UTF-8") from None
    return params


async def _register_quietly(server: RaftServer, join: JoinRequest) -> None:
    if join.http:
        try:
            await server.register_http(join.id, join.http)
        except RequestError:
            pass  # the node registers itself later (housekeeping)


async def handle_register(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    params = await _params(request)
    node_id = _parse_node_id(params.get("nodeId"))
    http = params.get("httpAddr")
    if http is None:
        raise BadRequest("httpAddr", "missing parameter: httpAddr")
    http = _parse_host_port(http, "httpAddr")

    async def local():
        if not server.node.configuration.has(node_id):
            raise _Answer(404, {"error": f"unknown server {node_id!r}", "param": "nodeId"})
        index = await server.register_http(node_id, http)
        return _json(server, {"id": node_id, "http": http, "index": index})
    return await on_leader(request, local, write=True)


async def handle_remove_peer(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    params = await _params(request)
    node_id = _parse_node_id(params.get("nodeId", params.get("id")))

    async def local():
        if not server.node.configuration.has(node_id):
            raise _Answer(404, {"error": f"unknown server {node_id!r}", "param": "nodeId"})
        index = await server.change_membership(ConfigCommand.REMOVE_SERVER, node_id)
        if server.node.role == LEADER:
            await server.forget_http(node_id)
        return _json(server, {"id": node_id, "removed": True, "index": index})
    return await on_leader(request, local, write=True)


async def handle_transfer(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    params = await _params(request)
    target = params.get("to", params.get("nodeId"))
    if target is not None:
        target = _parse_node_id(target, "to")

    async def local():
        conf = server.node.configuration
        if target is not None:
            if target == server.id:
                raise BadRequest("to", f"{target} is already the leader")
            if not conf.is_voter(target):
                raise BadRequest("to", f"{target!r} is not a voter in the configuration")
        await server.transfer_leadership(target)
        return _json(server, {"transferred": True, "from": server.id, "to": target})
    return await on_leader(request, local, write=True)


async def handle_status(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    return _json(server, {**server.status(), "fault_injection": server.faults is not None}, served_by=False)


async def handle_peers(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    local_only = parse_bool_param(request.query, "local", False)
    node = server.node
    if not local_only and node.role != LEADER and FORWARDED_BY not in request.headers:
        leader_http = server.leader_http()
        if leader_http:
            resp, _ = await _forward(request, server, leader_http, write=False)
            if resp.status == 200:
                return resp
    return _json(server, server.peers())


async def handle_snapshot(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    meta = await server.snapshot_now()
    return _json(server, {"id": meta.id, "index": meta.index, "term": meta.term, "size": meta.size})


# --- backup and restore ----------------------------------------------------------
#
# Snapshots can be far larger than any request body limit, so these two routes
# stream: the backup from the snapshot file to the client, an upload from the
# client to a file, and a follower relays both to the leader chunk by chunk.

BACKUP_CHUNK = 1024 * 1024
SNAPSHOT_INDEX = "X-Raftkv-Snapshot-Index"
SNAPSHOT_TERM = "X-Raftkv-Snapshot-Term"
SNAPSHOT_CRC = "X-Raftkv-Snapshot-Crc32"


async def _on_leader_streaming(request: web.Request,
                               local: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    server = _server(request)
    if server.node.role == LEADER:
        return await local()
    if FORWARDED_BY in request.headers:
        return _unavailable(server, "node is not the leader", False)
    leader_http = server.leader_http()
    if not leader_http:
        return _unavailable(server, "no leader", False)
    headers = {FORWARDED_BY: server.id}
    for name in ("Content-Type", "Authorization"):
        if request.headers.get(name):
            headers[name] = request.headers[name]
    url = URL(f"http://{leader_http}{request.raw_path}", encoded=True)
    body = request.content if request.method == "POST" else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=max(60.0, _leader_wait(server)))
    try:
        async with server.http_client.request(request.method, url, data=body, headers=headers,
                                              timeout=timeout, allow_redirects=False) as resp:
            out = web.StreamResponse(status=resp.status)
            for name in ("Content-Type", "Content-Length", "Content-Disposition", SERVED_BY,
                         SNAPSHOT_INDEX, SNAPSHOT_TERM, SNAPSHOT_CRC):
                if name in resp.headers:
                    out.headers[name] = resp.headers[name]
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(BACKUP_CHUNK):
                await out.write(chunk)
            await out.write_eof()
            return out
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        hclog.emit("WARN", LOGGER, "failed to forward request to leader",
                   [("leader", leader_http), ("error", str(exc) or type(exc).__name__)])
        return _unavailable(server, f"forwarding to the leader failed: {exc or type(exc).__name__}",
                            request.method == "POST")


async def handle_backup(request: web.Request) -> web.StreamResponse:
    """GET /snapshot: download a snapshot holding every acknowledged write."""
    server = _server(request)

    async def local() -> web.StreamResponse:
        meta, f = await server.latest_snapshot()
        loop = asyncio.get_running_loop()
        try:
            resp = web.StreamResponse(headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="raftkv-{meta.term}-{meta.index}.snapshot"',
                SERVED_BY: server.id, SNAPSHOT_INDEX: str(meta.index), SNAPSHOT_TERM: str(meta.term),
                SNAPSHOT_CRC: str(server.snapshots.crc_of(meta.id))})
            resp.content_length = meta.size
            await resp.prepare(request)
            while chunk := await loop.run_in_executor(None, f.read, BACKUP_CHUNK):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            f.close()
    return await _on_leader_streaming(request, local)


async def handle_restore(request: web.Request) -> web.StreamResponse:
    """POST /restore: the request body (a backup from GET /snapshot) becomes
    the whole cluster's state."""
    server = _server(request)

    async def local() -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        fd, path = await loop.run_in_executor(None, server.upload_file)
        try:
            with os.fdopen(fd, "wb") as f:
                received = 0
                async for chunk in request.content.iter_chunked(BACKUP_CHUNK):
                    received += len(chunk)
                    await loop.run_in_executor(None, f.write, chunk)
            if not received:
                raise BadRequest("body", "the request body must be a snapshot (raftkv snapshot save)")
            index, keys = await server.restore_backup(path)
        finally:
            await loop.run_in_executor(None, _unlink, path)
        hclog.emit("INFO", LOGGER, "restored backup", [("index", index), ("keys", keys), ("bytes", received)])
        return _json(server, {"index": index, "keys": keys, "bytes": received})
    return await _on_leader_streaming(request, local)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- wiring -------------------------------------------------------------------------

def create_app(server: RaftServer) -> web.Application:
    from . import dashboard
    limit = server.settings.max_body
    from .admin import require_cluster_key
    app = web.Application(middlewares=[dashboard.observe_middleware, _errors, require_cluster_key],
                          client_max_size=limit)
    app[APP_SERVER] = server
    app[MAX_BODY] = limit
    dashboard.add_routes(app, server)  # /ui, /metrics, /debug/*
    r = app.router
    for method in ("GET", "POST"):
        r.add_route(method, "/join", handle_join)
        r.add_route(method, "/set", handle_set)
        r.add_route(method, "/remove", handle_remove)
    r.add_route("DELETE", "/remove", handle_remove)
    r.add_get("/get", handle_get)
    r.add_post("/key", handle_key_post)
    r.add_get("/key/{key:.+}", handle_key_get)
    r.add_delete("/key/{key:.+}", handle_key_delete)
    r.add_post("/remove-peer", handle_remove_peer)
    r.add_delete("/remove-peer", handle_remove_peer)
    r.add_post("/transfer-leadership", handle_transfer)
    r.add_get("/status", handle_status)
    r.add_get("/peers", handle_peers)
    r.add_post("/snapshot", handle_snapshot)
    r.add_get("/snapshot", handle_backup)
    r.add_post("/restore", handle_restore)
    r.add_post("/_raftkv/register", handle_register)
    from .admin import add_admin_routes
    add_admin_routes(app)
    return app


class _JsonErrorHandler(web_protocol.RequestHandler):
    """aiohttp answers a request it cannot parse (a request line or header
    over the limit, bytes that are not HTTP) itself, in plain text. Ours is
    JSON like every other answer, and a request line too long to hold even a
    value at the limit is a 413."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            status = 413
        error = (getattr(exc, "message", None) or message or "bad request").strip()
        if len(error) > 200:
            error = error[:200] + "..."
        hclog.emit("WARN", LOGGER, "unparseable request", [("remote", request.remote or ""),
                                                          ("status", status), ("error", error)])
        resp = web.json_response({"error": error, "param": "request"}, status=status)
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    __slots__ = ()

    def __call__(self) -> web_protocol.RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


async def start_api(server: RaftServer) -> web.AppRunner:
    s = server.settings
    from .metrics import instrument
    instrument(server)
    app = create_app(server)
    # A value may travel in the query string (GET /set?key=k&value=...), so
    # the request line must be able to hold one over the limit: then the
    # handler answers 413 instead of the parser answering 400.
    line = 3 * s.max_body + 16 * 1024
    runner = _Runner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                           max_line_size=line, max_field_size=max(8190, 16 * 1024))
    await runner.setup()
    from .hotpath import HotPathSite
    site = HotPathSite(runner, s.bind_addr, s.http_port, reuse_address=True)
    await site.start()
    return runner
