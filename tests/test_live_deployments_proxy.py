"""The proxy's plugin reads ``failover_settings`` and the deployments from what LiteLLM loaded.

LiteLLM's proxy merges ``include:`` files and resolves ``os.environ/`` (and secret-manager)
references before it builds its callbacks; the plugin takes that loaded config, not the YAML file
read a second time. (Deployments added through the proxy's ``/model/new`` need LiteLLM's own
database, which cannot run here: ``tests/test_live_deployments.py`` drives the same Router calls
the proxy makes.)
"""

from __future__ import annotations

import pytest
import yaml
from fake_nodes import running, wait_all_healthy, wait_events
from openai import AsyncOpenAI

from litellm_failover import proxy as failover_proxy
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess


@pytest.fixture
def fresh_handler(monkeypatch):
    """A proxy handler built anew, and LiteLLM's proxy config state put back afterwards."""
    from litellm.proxy import proxy_server

    saved = proxy_server.proxy_config.config
    monkeypatch.setattr(failover_proxy, "_instance", None)
    yield proxy_server
    proxy_server.proxy_config.config = saved


def test_the_handler_takes_failover_settings_from_the_config_litellm_loaded(
    fresh_handler, tmp_path, monkeypatch
):
    proxy_server = fresh_handler
    # The file on disk says one thing; what LiteLLM loaded from it (its includes, its secret
    # manager) says another. The plugin must follow LiteLLM.
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"failover_settings": {"strategy": "round-robin"}, "model_list": []}))
    monkeypatch.setattr(proxy_server, "user_config_file_path", str(path))
    proxy_server.proxy_config.update_config_state(
        {
            "model_list": [],
            "failover_settings": {"strategy": "weighted", "health": {"interval_s": 0.75}},
        }
    )
    handler = failover_proxy.proxy_handler()
    assert handler.settings.strategy == "weighted"
    assert handler.settings.health.interval_s == 0.75


def test_a_bad_value_in_the_loaded_config_is_refused_with_its_key_path(fresh_handler, capsys):
    fresh_handler.proxy_config.update_config_state({"failover_settings": {"stratgy": "weighted"}})
    with pytest.raises(failover_proxy.FailoverConfigError, match=r"failover_settings\.stratgy"):
        failover_proxy.proxy_handler()
    assert "failover_settings.stratgy" in capsys.readouterr().err


@pytest.mark.proxy
async def test_the_proxy_plugin_follows_included_files_and_environment_references(tmp_path, monkeypatch):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    monkeypatch.setenv("FAILOVER_TEST_DATABASE_URL", database_url)
    nodes = {name: FakeVLLMProcess(name, tokens_per_s=400) for name in ("p1", "s1")}
    with running(nodes):
        # The deployments and the plugin's settings both live in included files.
        models = [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "hosted_vllm/fake-model",
                    "api_base": node.api_base,
                    "order": 1 if name == "p1" else 2,
                    "timeout": 5,
                },
                "model_info": {"id": name, "failover": {"gpu_url": node.url}},
            }
            for name, node in nodes.items()
        ]
        (tmp_path / "models.yaml").write_text(yaml.safe_dump({"model_list": models}))
        settings = {
            "database_url": "os.environ/FAILOVER_TEST_DATABASE_URL",
            "health": {"interval_s": 0.25, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0},
        }
        (tmp_path / "failover.yaml").write_text(yaml.safe_dump({"failover_settings": settings}))
        config = {
            "include": ["models.yaml", "failover.yaml"],
            "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
            "router_settings": {"num_retries": 2, "retry_after": 0},
        }
        with ProxyProcess(config, tmp_path) as proxy:
            # The plugin writes where the included, environment-resolved setting says, and
            # manages the included deployments.
            await wait_all_healthy(database_url, ["p1", "s1"])
            client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
            response = await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            assert response.system_fingerprint == "p1"
            nodes["p1"].kill()
            served = set()
            for _ in range(4):
                answer = await client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}]
                )
                served.add(answer.system_fingerprint)
            assert served == {"s1"}
            # The proxy's writer records the ejection on its own schedule, maybe after the answers.
            await wait_events(
                database_url,
                "state_change",
                lambda found: any(
                    e["deployment_id"] == "p1" and e["details"]["to_state"] == "unhealthy" for e in found
                ),
            )
