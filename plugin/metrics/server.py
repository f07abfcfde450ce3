"""The plugin's own metrics port (``failover_settings.metrics.port``): GET /metrics on 127.0.0.1.

An aiohttp server on the plugin's event loop, as the fake vLLM and the probes use. The page is
rendered in a worker thread (as LiteLLM's /metrics does), so a scrape of a large fleet never holds
up routing on the loop; the collector is written for that (see ``collector``). Content
negotiation follows prometheus_client: OpenMetrics when the scraper asks for it, text otherwise.
"""

from __future__ import annotations

import asyncio
import errno

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from litellm_failover.settings import FailoverConfigError

PATH = "/metrics"


class MetricsPortError(FailoverConfigError):
    """The metrics port can't be opened; the message names the setting and the port."""


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self.port: int | None = None  # the bound one (``port: 0`` picks a free one)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get(PATH, self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsPortError(self._explain(exc)) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.port = None

    def _explain(self, exc: OSError) -> str:
        where = f"{self.host}:{self.requested_port}"
        if exc.errno == errno.EADDRINUSE:
            return (
                f"invalid configuration: failover_settings.metrics.port: port {self.requested_port} "
                f"is already in use on {self.host} (choose another port, or 0 for any free one)"
            )
        return (
            "invalid configuration: failover_settings.metrics.host / failover_settings.metrics.port: "
            f"can't listen on {where}: {exc.strerror or exc}"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await asyncio.to_thread(encoder, self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response
