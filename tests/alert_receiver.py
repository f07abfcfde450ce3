"""A real HTTP receiver for alert tests: an aiohttp server on 127.0.0.1 that records every POST.

It can answer with errors for a while (``fail_next``), always (``always_fail``), or hold every
request open until ``release`` (a destination that hangs).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the receiver answered


class AlertReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._failures_left = 0
        self._always: int | None = None
        self._status = 500
        self._gate: asyncio.Event | None = None
        self.waiting = 0  # requests held open right now
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)  # its log would show the URLs under test
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> AlertReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500) -> None:
        self._failures_left, self._status = count, status

    def always_fail(self, status: int = 500) -> None:
        self._always = status

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    def delivered(self, path: str | None = None) -> list[Any]:
        """Bodies answered with 2xx, in arrival order (optionally on one path)."""
        return [r.body for r in self.received if r.status < 300 and (path is None or r.path == path)]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self._gate is not None and not self._gate.is_set():
            self.waiting += 1
            try:
                await self._gate.wait()
            finally:
                self.waiting -= 1
        status = 200
        if self._always is not None:
            status = self._always
        elif self._failures_left > 0:
            self._failures_left -= 1
            status = self._status
        self.received.append(Received(request.path, dict(request.headers), body, status))
        return web.json_response({"ok": status < 300}, status=status)
