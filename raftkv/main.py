"""Runs one raftkv node: builds the runtime (:mod:`raftkv.node`) and its
HTTP side (:mod:`raftkv.http`), and stops both on SIGTERM/SIGINT.

The exit code says why the node stopped: 0 after SIGTERM/SIGINT; 2 for a
bad setting (:mod:`raftkv.cli.main`); 73 when the volume cannot be used, so the
node did not start (read-only, not writable, less free space than
``RAFT_MIN_FREE_BYTES``, or corrupt: docs/disks.md); 74 when the volume failed (a write or fsync error,
a full disk) or went away (deleted, replaced) while the node ran; 1 for
anything else (a port in use, a volume in use by another process, a bug).
A supervisor should not restart on 2 or 73: only an operator can fix those.
See :mod:`raftkv.node.disk.watchdog`."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .config.settings import NodeSettings
from .config.tls import TlsContexts, build_contexts
from .http.leave import leave_cluster
from .http.service import HttpService
from .node.build import choose_parts
from .node.disk.watchdog import EXIT_VOLUME_UNUSABLE, start_refusal
from .node.runtime import Node
from .observability import hclog
from .observability.metrics import NodeMetrics
from .storage import StorageCorruptError

raft_log = hclog.get_logger("raft")

__all__ = ["run_node"]


def _tls_contexts(settings: NodeSettings) -> TlsContexts | None:
    if not settings.tls:
        return None
    return build_contexts(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)


async def serve(settings: NodeSettings) -> int:
    # Before anything touches the volume: a node that starts on a full disk
    # dies at its first write, and a supervisor would restart it forever.
    refusal = start_refusal(settings.data_dir, settings.min_free_bytes)
    if refusal is not None:
        raft_log.error(refusal)
        return EXIT_VOLUME_UNUSABLE
    try:
        tls = _tls_contexts(settings)
    except ValueError as exc:  # a certificate, key or CA file that will not load
        raft_log.error("failed to start node", error=str(exc))
        return 1
    metrics = NodeMetrics()
    node = Node(settings, metrics, tls=tls, parts=choose_parts(settings, tls))
    metrics.watch(node)
    http = HttpService(node, settings, metrics, tls=tls)
    loop = asyncio.get_running_loop()
    try:
        await node.start()
        await http.start()
    except Exception as exc:  # ports in use, an unreadable or corrupt volume ...
        raft_log.error("failed to start node", error=f"{type(exc).__name__}: {exc}")
        for closer in (http.stop(), node.abort()):
            try:
                await closer
            except Exception:
                pass
        # a corrupt volume is one only an operator can mend (wipe it): a
        # supervisor restarting the node would only see the same refusal
        return EXIT_VOLUME_UNUSABLE if isinstance(exc, StorageCorruptError) else 1
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, signalled, node)
    await node.wait_shutdown_requested()
    if settings.leave_on_terminate and signalled.is_set() and not node.stopping and http.ctx is not None:
        # told to stop, not failing: the node still serves while it leaves,
        # and a second signal cuts the leave short
        leaving = loop.create_task(leave_cluster(http.ctx))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, leaving.cancel)
        await asyncio.wait([leaving])
    await node.stop()
    await http.stop()
    return node.exit_code


def _on_signal(signalled: asyncio.Event, node: Node) -> None:
    signalled.set()
    node.request_shutdown()


class _LogStream:
    """stderr for log lines, minus its failure modes: a node whose log reader
    went away (``raftkv serve 2>&1 | head``) must keep serving and still shut
    down cleanly, not die of BrokenPipeError in the middle of a step."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                self.stream.write(text)
            except (OSError, ValueError):
                self.broken = True

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True


def _use_lab_rules(lab_dir: str) -> None:
    """``--lab DIR``: every core of this process decides by the learner's
    functions; the rest of the node is the same."""
    from raftkv.lab.loader import load_rules
    from raftkv.raft.node import RaftNode
    rules, found = load_rules(lab_dir)
    RaftNode.rules = rules
    names = ", ".join(f"{e.function} ({e.name})" for e in found) or "none found"
    logging.getLogger("raft.lab").warning("deciding by the lab's functions from %s: %s", lab_dir, names)


def serve_recording(recording, host: str, port: int, out=print) -> int:
    """``raftkv lab open``: the learning page with one recorded run in it,
    served until SIGINT/SIGTERM; no node, no volume."""
    from aiohttp import web

    from .http.pages.learn import recording_app

    async def run() -> None:
        app, world_id = recording_app(recording)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            bound = runner.addresses[0][1]
            shown = f"[{host}]" if ":" in host else host
            out(f"open http://{shown}:{bound}/ui/learn?recording={world_id}&paused=1   (Ctrl-C stops)")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()
    try:
        asyncio.run(run())
    except OSError as exc:   # the port is taken
        print(f"raftkv lab open: cannot serve on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


def run_node(settings: NodeSettings) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit code."""
    hclog.configure(settings.log_level, settings.log_format, stream=_LogStream(sys.stderr))
    if settings.lab_dir:
        from raftkv.lab.loader import LabDirError
        try:
            _use_lab_rules(settings.lab_dir)
        except LabDirError as exc:
            print(f"raftkv serve: RAFT_LAB (--lab): {exc}", file=sys.stderr)
            return 2
    import uvloop
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings))
