"""The Raft process's HTTP workers (``HTTP_WORKERS=N``): starts N
``python -m raftkv.http.workers.worker`` processes once its internal listener and
the link are up, starts a new one when one dies (a WARN line says so), and
stops them on shutdown. See :mod:`raftkv.http.workers.worker` for what a worker does.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

from raftkv.config.settings import NodeSettings
from raftkv.observability import hclog
from raftkv.observability.procstat import process_stats

from .link import LinkServer

http_log = hclog.get_logger("http")

__all__ = ["WorkerPool"]

READY_TIMEOUT = 20.0
# A worker that dies sooner than this after starting is restarted after a pause.
_QUICK_DEATH = 2.0


def _check_port_free(host: str, port: int) -> None:
    """Fail as a busy port does without workers: the workers bind with
    SO_REUSEPORT, which another raftkv started the same way would share."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)


class WorkerPool:
    def __init__(self, settings: NodeSettings, link: LinkServer, spec: dict) -> None:
        self.settings = settings
        self.link = link
        self.spec = spec
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._watchers: list[asyncio.Task] = []

    async def start(self) -> None:
        s = self.settings
        _check_port_free(s.bind_addr, s.http_port)
        slots = range(s.http_workers)
        results = await asyncio.gather(*(self._start_one(slot) for slot in slots), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        for slot in slots:
            self._watchers.append(asyncio.get_running_loop().create_task(self._watch(slot),
                                                                         name=f"raftkv-http-worker-{slot}"))

    async def _start_one(self, slot: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raftkv.http.workers.worker", json.dumps(self.spec),
            stdin=subprocess.DEVNULL, close_fds=True)
        self.procs[slot] = proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while proc.pid not in self.link.pids():
            if proc.returncode is not None:
                raise RuntimeError(f"HTTP worker exited with code {proc.returncode} while starting")
            if loop.time() > deadline:
                proc.kill()
                raise RuntimeError("HTTP worker did not start in time")
            await asyncio.sleep(0.02)

    async def _watch(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            proc = self.procs[slot]
            started = loop.time()
            code = await proc.wait()
            if self.stopping:
                return
            http_log.warn("HTTP worker exited, starting another", pid=proc.pid, **{"exit-code": code})
            if loop.time() - started < _QUICK_DEATH:
                await asyncio.sleep(1.0)
            while not self.stopping:
                try:
                    await self._start_one(slot)
                    break
                except Exception as exc:
                    http_log.error("failed to start HTTP worker", error=str(exc))
                    await asyncio.sleep(1.0)

    def pids(self) -> list[int]:
        """The workers that are serving (said hello over the link)."""
        ready = set(self.link.pids())
        return [proc.pid for proc in self.procs.values() if proc.returncode is None and proc.pid in ready]

    def processes(self) -> list[dict]:
        """The Raft process and every live worker, with CPU and RSS."""
        rows = [process_stats("raft", os.getpid())]
        rows += [process_stats("http-worker", pid) for pid in self.pids()]
        return [row for row in rows if row is not None]

    async def stop(self) -> None:
        self.stopping = True
        for task in self._watchers:
            task.cancel()
        procs = [p for p in self.procs.values() if p.returncode is None]
        for proc in procs:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
