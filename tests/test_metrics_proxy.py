"""The plugin's metrics from a real LiteLLM proxy process.

LiteLLM 1.108 mounts /metrics only when ``litellm_settings.callbacks`` has ``prometheus``, serves
prometheus_client's default registry there, and asks for a LiteLLM key unless
``require_auth_for_metrics_endpoint: false``. Without that callback, ``failover_settings.metrics.port``
gives the plugin a port of its own.

Until ``FailoverPlugin`` builds its ``PluginMetrics`` itself, a small callback file next to the
config (``metrics_hook.py``, loaded by LiteLLM like any custom callback) does what that wiring
does: ``PluginMetrics(plugin)`` and ``await start()``. It steps aside when the plugin already has
``plugin.metrics``, so these tests keep testing the real wiring once it exists.
"""

from __future__ import annotations

import importlib.metadata

import aiohttp
import pytest
from fake_nodes import running
from metrics_scrape import scrape, state_of, value
from test_proxy_failover import client_for
from test_proxy_failover import proxy_config as failover_proxy_config
from waiting import free_port, wait_until

from litellm_failover import __version__
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess

pytestmark = pytest.mark.proxy

HOOK = """
import asyncio

from litellm.integrations.custom_logger import CustomLogger

from litellm_failover import proxy as failover_proxy
from litellm_failover.metrics import PluginMetrics


class MetricsHook(CustomLogger):
    def __init__(self):
        super().__init__()
        self.metrics = None
        self.task = asyncio.get_running_loop().create_task(self._wire())

    async def _wire(self):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            handler = failover_proxy._instance
            plugin = handler.plugin if handler is not None else None
            if plugin is not None:
                if getattr(plugin, "metrics", None) is None:
                    self.metrics = PluginMetrics(plugin)
                    await self.metrics.start()
                return
            await asyncio.sleep(0.05)


hook = MetricsHook()
"""


def proxy_config(nodes: dict[str, FakeVLLMProcess], tmp_path, callbacks: list[str], **failover) -> dict:
    """The failover proxy tests' config, with LiteLLM callbacks in front and the hook behind."""
    config = failover_proxy_config(nodes, f"sqlite+aiosqlite:///{tmp_path}/events.db", **failover)
    config["litellm_settings"]["callbacks"] = [
        *callbacks,
        "litellm_failover.proxy_handler",
        "metrics_hook.hook",
    ]
    return config


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=400) for name in ("p1", "s1")}) as started:
        yield started


def start_proxy(config: dict, tmp_path) -> ProxyProcess:
    (tmp_path / "metrics_hook.py").write_text(HOOK)
    process = ProxyProcess(config, tmp_path)
    process.start()
    return process


async def test_plugin_metrics_on_litellms_metrics_route(nodes, tmp_path):
    proxy = start_proxy(proxy_config(nodes, tmp_path, ["prometheus"]), tmp_path)
    try:
        url = f"{proxy.url}/metrics"  # LiteLLM's mount answers 307 to /metrics/; the client follows
        key = {"Authorization": f"Bearer {proxy.master_key}"}

        async def shows(deployment: str, state: str) -> bool:
            return state_of(await scrape(url, key), "chat", deployment) == state

        await wait_until(
            lambda: shows("p1", "healthy"), timeout=20, what="p1 healthy on the proxy's /metrics"
        )
        page = await scrape(url, key)
        assert value(page, "litellm_failover_deployment_serving", model_group="chat", deployment="p1") == 1
        litellms_own = [name for name, _ in page if name.startswith("litellm_") and "failover" not in name]
        assert litellms_own  # the same page carries LiteLLM's own metrics
        build = {"version": __version__, "litellm_version": importlib.metadata.version("litellm")}
        assert value(page, "litellm_failover_build_info", **build) == 1

        # One request: LiteLLM counts it under its ``model_id`` label, the plugin's series carry
        # the same value, so ``on(model_id)`` joins the two.
        await client_for(proxy).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hello"}]
        )

        async def litellm_counted() -> set[str]:
            return {
                dict(labels)["model_id"]
                for name, labels in await scrape(url, key)
                if name == "litellm_deployment_success_responses_total" and "model_id" in dict(labels)
            }

        await wait_until(litellm_counted, timeout=10, what="LiteLLM's success counter with a model_id")
        joined = await litellm_counted()
        ours = {
            dict(labels)["model_id"] for name, labels in page if name == "litellm_failover_deployment_tier"
        }
        assert ours == {"p1", "s1"} and joined and joined <= ours

        nodes["p1"].set_fault("http_500")
        await wait_until(lambda: shows("p1", "unhealthy"), timeout=15, what="p1 unhealthy on /metrics")
        page = await scrape(url, key)
        assert value(page, "litellm_failover_deployment_serving", model_group="chat", deployment="s1") == 1
        assert value(page, "litellm_failover_failovers_total", model_group="chat", reason="probe") >= 1

        async with aiohttp.ClientSession() as session, session.get(f"{url}/") as response:
            assert response.status == 401  # LiteLLM's default: /metrics needs a LiteLLM key
    finally:
        proxy.stop()
    log = proxy.log_tail(400)
    assert "metrics: reading" not in log  # no collector section failed during the scrapes
    assert "plugin/metrics/" not in log and "litellm_failover/metrics/" not in log  # no traceback of ours


async def test_own_port_when_litellm_serves_no_metrics(nodes, tmp_path):
    port = free_port()
    proxy = start_proxy(proxy_config(nodes, tmp_path, [], metrics={"port": port}), tmp_path)
    try:
        own = f"http://127.0.0.1:{port}/metrics"

        async def healthy() -> bool:
            try:
                return state_of(await scrape(own), "chat", "p1") == "healthy"
            except (OSError, AssertionError):
                return False  # the port opens once the plugin has started

        await wait_until(healthy, timeout=20, what="p1 healthy on the plugin's own port")
        key = {"Authorization": f"Bearer {proxy.master_key}"}
        async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/metrics/", headers=key) as r:
            assert r.status == 404  # no prometheus callback: LiteLLM mounts no /metrics
    finally:
        proxy.stop()


async def test_a_proxy_that_serves_the_metrics_nowhere_says_which_setting_to_add(nodes, tmp_path):
    proxy = start_proxy(proxy_config(nodes, tmp_path, []), tmp_path)
    try:

        async def warned() -> bool:
            return "litellm-failover metrics are not served" in proxy.log_tail(400)

        await wait_until(warned, timeout=20, what="the warning in the proxy's log")
        log = proxy.log_tail(400)
        assert "failover_settings.metrics.port" in log and "litellm_settings.callbacks" in log
    finally:
        proxy.stop()
