"""The asyncio client, on aiohttp.

:class:`AsyncClient` drives :func:`~.core.conduct`'s steps with an aiohttp
session (its pool of kept-alive connections) and ``asyncio.sleep`` for
backoff: the same calls as :class:`~.sync.Client`, each awaited.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp

from .core import Failure, Operation, Send, Sleep, Steps, advance
from .errors import Answer
from .operations import Calls

__all__ = ["AsyncClient"]


class AsyncClient(Calls):
    """A raftkv cluster, from asyncio: ``await AsyncClient("127.0.0.1:8000").set("k", "v")``.

    The same calls as :class:`~raftkv.client.Client`, each a coroutine. The
    session opens on the first call, in its event loop; ``await close()``
    (or ``async with AsyncClient(...) as c:``) closes it."""

    def __init__(self, addresses: Any, *, cacert: Any = None, cluster_key: str | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(addresses, cacert=cacert, cluster_key=cluster_key, timeout=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def _run(self, op: Operation) -> Any:
        return self._drive(self._steps(op))

    async def _drive(self, steps: Steps) -> Any:
        outcome: Answer | Failure | None = None
        while True:
            over, step = advance(steps, outcome)
            if over:
                return step
            outcome = await self._perform(step)

    async def _perform(self, step: Send | Sleep) -> Answer | Failure | None:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        return await self._send(step)

    async def _send(self, step: Send) -> Answer | Failure:
        timeout = aiohttp.ClientTimeout(total=step.timeout, connect=step.connect_timeout)
        try:
            async with self._session_now().request(step.method, step.base + step.target, data=step.body,
                                                   headers=dict(step.headers), timeout=timeout,
                                                   allow_redirects=False) as resp:
                data = await resp.read()
                headers = {name.lower(): value for name, value in resp.headers.items()}
                return Answer(resp.status, data, headers)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
            return Failure(exc, sent=False, tls=True)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ssl.SSLError):
                return Failure(exc, sent=False, tls=True)
            return Failure(exc, sent=False)
        except aiohttp.ConnectionTimeoutError as exc:
            return Failure(exc, sent=False, timed_out=True)
        except TimeoutError as exc:  # the whole request's (or aiohttp's ServerTimeoutError, reading)
            return Failure(exc, sent=True, timed_out=True)
        except (aiohttp.ClientError, OSError) as exc:
            return Failure(exc, sent=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({', '.join(self.addresses)})"
