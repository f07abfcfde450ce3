"""Helpers for the provider and GPU tests: real aiohttp servers on 127.0.0.1, crafted answers.

(Named ``test_*`` only so it sits with the tests it serves; it defines no tests.)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from litellm_failover.providers import build_prober
from litellm_failover.providers.base import Prober, ProbeReport
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.runner import run_probe
from litellm_failover.providers.thresholds import ProbeThresholds
from litellm_failover.settings import parse_deployment_config

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FAST = ProbeThresholds(max_probe_latency_s=1.0, gpu_read_interval_s=0.0)  # every round reads the GPU


@dataclass
class Server:
    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]


@asynccontextmanager
async def serve(routes: dict[str, Handler], tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """A real HTTP server on an ephemeral port; records each request's path and headers.
    With ``tls`` (``egress_support.server_context``) it serves ``https://``."""
    server = Server(url="")

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        server.requests.append((request.path, dict(request.headers)))
        return await handler(request)

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def text(body: str, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=body, status=status)

    return handler


def json_answer(doc: object, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(doc, status=status)

    return handler


def never_answers() -> Handler:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.Event().wait()  # cancelled when the client goes away
        raise AssertionError("unreachable")

    return handler


def trickle(first: bytes = b"vllm:num_requests_running 1\n", every_s: float = 0.05) -> Handler:
    """Headers at once, then one byte per ``every_s`` forever: a body that never completes."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(first)
        while True:
            await asyncio.sleep(every_s)  # the behaviour under test, not synchronisation
            await response.write(b"#")

    return handler


def huge(size: int, *, declare_length: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if declare_length:
            return web.Response(body=b"x" * size)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(size // 4096 + 1):
            await response.write(b"# " + b"x" * 4094)
        return response

    return handler


def prober_for(
    litellm_params: dict,
    failover: dict | None = None,
    thresholds: ProbeThresholds = FAST,
    deployment_id: str = "d1",
) -> Prober:
    config = parse_deployment_config(failover or {}, "model_list[0].model_info.failover")
    return build_prober(deployment_id, litellm_params, config, thresholds, where="model_list[0]")


async def probe_once(prober: Prober) -> ProbeReport:
    async with ProbeClient() as session:
        return await run_probe(prober, session)


def by_name(report: ProbeReport) -> dict[str, object]:
    return {c.name: c for c in report.checks}
