"""Debian's firefox-esr driven over WebDriver BiDi, the W3C protocol Firefox
speaks itself (``--remote-debugging-port``). Playwright drives only its own
patched Firefox builds, which this project never downloads; the few commands
a page test needs are small enough to speak directly, over aiohttp's
WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import aiohttp
import pytest

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"

needs_firefox = pytest.mark.skipif(
    not os.path.exists(FIREFOX),
    reason=f"firefox not found at {FIREFOX} (apt-get install -y firefox-esr; .ci/run does it)")

_LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")


class BidiError(RuntimeError):
    """Firefox answered a command with an error, or a script threw."""


class Firefox:
    """One headless Firefox with one tab. ``errors`` collects the page's
    JavaScript errors and console errors as they are reported."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._profile = tempfile.mkdtemp(prefix="raftkv-firefox-")
        self._proc: subprocess.Popen | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self.context = ""

    async def __aenter__(self) -> "Firefox":
        # port 0: Firefox picks a free port and prints the address it took
        self._proc = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", self._profile, "--remote-debugging-port", "0",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"}, start_new_session=True)
        url = await asyncio.wait_for(asyncio.to_thread(self._address), self.timeout)
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"{url}/session", max_msg_size=64 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())
        await self.send("session.new", {"capabilities": {}})
        tree = await self.send("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]
        await self.send("session.subscribe", {"events": ["log.entryAdded"]})
        return self

    def _address(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        seen = b""
        for line in self._proc.stderr:
            seen += line
            found = _LISTENING.search(line)
            if found:
                # drain the rest, so that Firefox never blocks on a full pipe
                threading.Thread(target=self._proc.stderr.read, daemon=True).start()
                return found.group(1).decode()
        raise RuntimeError(f"firefox exited before listening: {seen.decode(errors='replace')[-2000:]}")

    async def __aexit__(self, *exc) -> None:
        if self._ws is not None:
            try:
                await asyncio.wait_for(self.send("browser.close", {}), 5)
            except Exception:
                pass  # it is killed below either way
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "log.entryAdded":
                entry = data["params"]
                if entry.get("level") == "error":
                    self.errors.append(entry.get("text") or json.dumps(entry)[:500])

    async def send(self, method: str, params: dict) -> dict:
        assert self._ws is not None
        command_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = answer
        await self._ws.send_str(json.dumps({"id": command_id, "method": method, "params": params}))
        data = await asyncio.wait_for(answer, self.timeout)
        if data.get("type") == "error":
            raise BidiError(f"{method}: {data.get('error')}: {data.get('message')}")
        return data["result"]

    # -- what a page test does

    async def goto(self, url: str) -> None:
        await self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    async def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-able; an element is
        True), awaited if it is a promise."""
        result = await self.send("script.evaluate", {
            "expression": f"(async () => JSON.stringify((v => v instanceof Node || v)(await ({expression}))))()",
            "target": {"context": self.context}, "awaitPromise": True, "resultOwnership": "none"})
        if result.get("type") == "exception":
            raise BidiError(f"{expression}: {result['exceptionDetails'].get('text')}")
        value = result["result"]
        return None if value.get("type") != "string" else json.loads(value["value"])

    async def wait_for(self, expression: str, timeout: float | None = None, what: str | None = None):
        """Poll ``expression`` until it is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + (timeout or self.timeout)
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what or expression}")
            await asyncio.sleep(0.1)

    async def press(self, key: str) -> None:
        """A key pressed and released, as the keyboard does it (``"\\uE00C"`` is Escape)."""
        await self.send("input.performActions", {"context": self.context, "actions": [
            {"type": "key", "id": "keyboard", "actions": [{"type": "keyDown", "value": key},
                                                          {"type": "keyUp", "value": key}]}]})

    async def click(self, selector: str) -> None:
        """A mouse click in the middle of the element ``selector`` names."""
        box = await self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()",
            what=f"{selector} on the page")
        x, y = round(box[0]), round(box[1])
        await self.send("input.performActions", {"context": self.context, "actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
                {"type": "pointerMove", "x": x, "y": y}, {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0}]}]})

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("browsingContext.captureScreenshot", {"context": self.context})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
