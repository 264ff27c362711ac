"""An HTTP worker's way to the Raft process: every request the worker does
not serve itself is relayed, unchanged, to the Raft process's internal HTTP
listener on a unix socket, and the answer streamed back (the SSE stream
``/debug/stream`` and ``GET /snapshot`` included).

The relayed request carries ``X-Forwarded-For`` with the caller's IP (or,
for a request a peer forwarded, the IP that peer named), which the Raft
process trusts on its unix socket only: ``/join`` still sees the caller.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from raftkv.observability import hclog

from ..api.context import FORWARDED_BY, Call
from ..api.params import origin_form
from ..api.replies import SERVED_BY, Reply, unavailable

worker_log = hclog.get_logger("http.worker")

__all__ = ["RaftProcessProxy"]

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the relay sets itself.
_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                  "upgrade", "host", "x-forwarded-for"))
_CHUNK = 64 * 1024


def _forwarded_for(forwarded: bool, given: str | None, remote: str | None) -> str:
    if forwarded and given:
        return given
    return remote or ""


class RaftProcessProxy:
    """Relays requests to the Raft process's internal listener at ``path``."""

    def __init__(self, node_id: str, path: str, leader) -> None:
        self.node_id = node_id
        self.leader = leader  # () -> the known leader, for 503 answers
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=path, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3),
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent"))

    def _gone(self, exc: BaseException, unknown: bool) -> Reply:
        return unavailable(self.node_id, f"the node's Raft process did not answer: {exc or type(exc).__name__}",
                           unknown, self.leader())

    def _stopping(self) -> Reply:
        # the Raft process is gone and this worker is closing its relay:
        # nothing of the request was sent, so another node may take it
        return unavailable(self.node_id, "the node's Raft process is gone; this worker is stopping",
                           False, self.leader())

    async def relay(self, call: Call) -> Reply:
        """A fast-path request (no body), answered whole."""
        if self.session.closed:
            return self._stopping()
        headers = {"X-Forwarded-For": _forwarded_for(call.forwarded, call.header("x-forwarded-for"),
                                                     call.remote)}
        for name in ("authorization", "content-type", FORWARDED_BY.lower()):
            value = call.header(name)
            if value is not None:
                headers[name] = value
        try:
            async with self.session.request(call.method, URL("http://raftkv" + origin_form(call.raw_path),
                                                             encoded=True),
                                            headers=headers, allow_redirects=False) as resp:
                body = await resp.read()
                return Reply(resp.status, body, resp.headers.get("Content-Type") or "application/json",
                             ((SERVED_BY, resp.headers.get(SERVED_BY, self.node_id)),))
        except aiohttp.ClientConnectorError as exc:
            return self._gone(exc, False)
        except (aiohttp.ClientError, OSError) as exc:
            return self._gone(exc, call.method != "GET" or "/set" in call.raw_path)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The worker's fallback server: any request, bodies and answers streamed."""
        if self.session.closed:
            reply = self._stopping()
            return web.Response(body=reply.body, status=reply.status, content_type="application/json",
                                headers={SERVED_BY: self.node_id})
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
        headers["X-Forwarded-For"] = _forwarded_for(FORWARDED_BY in request.headers,
                                                    request.headers.get("X-Forwarded-For"), request.remote)
        body = request.content.iter_chunked(_CHUNK) if request.body_exists else None
        answer: web.StreamResponse | None = None
        try:
            async with self.session.request(request.method, URL("http://raftkv" + origin_form(request.raw_path),
                                                                encoded=True),
                                            headers=headers, data=body, allow_redirects=False) as resp:
                answer = web.StreamResponse(status=resp.status, reason=resp.reason)
                for name, value in resp.headers.items():
                    if name.lower() not in _HOP and name.lower() != "content-length":
                        answer.headers.add(name, value)
                if resp.content_length is not None:
                    answer.content_length = resp.content_length
                await answer.prepare(request)
                async for chunk in resp.content.iter_any():
                    await answer.write(chunk)
                await answer.write_eof()
                return answer
        except aiohttp.ClientConnectorError as exc:
            reply = self._gone(exc, False)
        except (aiohttp.ClientError, OSError) as exc:
            if answer is not None and answer.prepared:
                # the head is out: all the caller can learn is a cut stream
                worker_log.debug("relayed answer cut short", path=request.path, error=str(exc))
                if request.transport is not None:
                    request.transport.close()
                return answer
            reply = self._gone(exc, request.method not in ("GET", "HEAD"))
        return web.Response(body=reply.body, status=reply.status, content_type="application/json",
                            headers={SERVED_BY: self.node_id})

    async def close(self) -> None:
        await self.session.close()

