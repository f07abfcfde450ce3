"""End to end: behind an egress proxy, a hosted deployment's probe and its traffic take one road.

A real ``litellm.Router`` with the plugin attached, one OpenAI-compatible deployment whose host
name (``api.hosted.test``) only the real HTTP proxy in the test can resolve, and the fake vLLM
server behind it. LiteLLM's own client takes ``HTTP_PROXY`` from the environment; before the
probes did too, this deployment was ejected by its probes ("DNS lookup failed") while every
request to it worked.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from egress_support import HOSTED_NAME, EgressProxy
from fake_nodes import serving
from test_router_failover import make_plugin, state_of  # noqa: F401 (fixture)
from waiting import wait_until

from litellm_failover.providers.fake.vllm import FakeVLLM


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "DISABLE_AIOHTTP_TRUST_ENV"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def test_probe_and_traffic_share_the_egress_proxy(monkeypatch, make_plugin):  # noqa: F811
    async with serving({"h1": FakeVLLM("h1", tokens_per_s=0)}) as servers, EgressProxy().running() as proxy:
        port = urlsplit(servers["h1"].api_base).port
        assert port is not None
        proxy.hosts[HOSTED_NAME] = port
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        model_list = [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": f"http://{HOSTED_NAME}:{port}/v1",
                    "api_key": "sk-egress-test",
                    "timeout": 5,
                },
                "model_info": {"id": "h1"},
            }
        ]
        router, plugin = make_plugin(model_list)
        async with plugin:

            def probed_ok() -> bool:
                checks = plugin.status()["groups"]["chat"]["deployments"][0]["checks"]
                return "http_health" in checks and checks["http_health"]["ok"]

            await wait_until(probed_ok, timeout=10, what="h1's probe passing through the proxy")
            assert state_of(plugin, "h1") == "healthy"
            response = await router.acompletion(model="chat", messages=[{"role": "user", "content": "hi"}])
            assert response.choices[0].message.content
    assert f"GET http://{HOSTED_NAME}:{port}/v1/models" in proxy.requests
    assert f"POST http://{HOSTED_NAME}:{port}/v1/chat/completions" in proxy.requests
