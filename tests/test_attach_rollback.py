"""Never half-attached: a plugin that fails to start gives LiteLLM back its own behaviour.

The chosen rule (docs/guides/production-checklist.md, "Several workers"): a bad configuration
refuses to start; a plugin whose start fails for any other reason (here a metrics port in use)
stops what it started and detaches, so the Router's ``disable_cooldowns`` is what it was, the
handler is in none of LiteLLM's callback lists, and the SDK stream wrapper is gone.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import litellm
import pytest
from factories import model_list
from fake_nodes import running
from prometheus_client import REGISTRY, generate_latest
from test_proxy_failover import ORDER, client_for, proxy_config
from waiting import wait_until

from litellm_failover import AlreadyAttachedError, FailoverConfigError, attach
from litellm_failover.drill.loadgen import openai_sender, run_load
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.metrics import MetricsPortError
from litellm_failover.providers.fake.process import FakeVLLMProcess

CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


def registered(handler: object) -> list[str]:
    return [name for name in CALLBACK_LISTS if handler in getattr(litellm, name, [])]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def router_for(group: str, *, disable_cooldowns: bool = False) -> litellm.Router:
    router = litellm.Router(model_list=model_list((group, f"{group}-p1", 1, 1.0)), num_retries=1)
    router.disable_cooldowns = disable_cooldowns
    return router


def settings_for(tmp_path, port: int) -> dict:
    return {"database_url": f"sqlite+aiosqlite:///{tmp_path}/e.db", "metrics": {"port": port}}


@pytest.mark.parametrize("litellm_had", [False, True])
async def test_a_failed_start_detaches_and_restores_litellm(tmp_path, taken_port, litellm_had):
    group = f"rollback-{int(litellm_had)}"
    router = router_for(group, disable_cooldowns=litellm_had)
    plugin = attach(router, settings_for(tmp_path, taken_port))
    # Attached: the plugin's state is in LiteLLM.
    assert router.disable_cooldowns is True and registered(plugin.handler)
    assert "acompletion" in vars(router) and group.encode() in generate_latest(REGISTRY)

    with pytest.raises(MetricsPortError, match=r"failover_settings\.metrics\.port"):
        async with plugin:
            pytest.fail("the plugin must not run with its metrics port taken")

    assert router.disable_cooldowns is litellm_had  # back to what LiteLLM had, not forced to False
    assert registered(plugin.handler) == []
    assert plugin.handler.plugin is None
    assert "acompletion" not in vars(router)  # the Router's own method shows through
    assert group.encode() not in generate_latest(REGISTRY)
    assert not (tmp_path / "e.db").exists()  # the metrics port is checked first: nothing else ran
    # A detached plugin refuses to start again instead of running half-attached.
    with pytest.raises(RuntimeError, match="detached"):
        await plugin.start()
    plugin.detach()  # idempotent
    assert router.disable_cooldowns is litellm_had


async def test_the_router_still_routes_litellms_way_after_a_failed_start(tmp_path, taken_port):
    router = router_for("rollback-route")
    plugin = attach(router, settings_for(tmp_path, taken_port))
    with pytest.raises(MetricsPortError):
        await plugin.start()
    answer = await router.acompletion(
        model="rollback-route", messages=[{"role": "user", "content": "hi"}], mock_response="fine"
    )
    assert answer.choices[0].message.content == "fine"
    assert len(plugin.book) == 0  # LiteLLM picked alone: the plugin saw no request


@pytest.mark.parametrize("litellm_had", [False, True])
async def test_one_plugin_per_router_and_detach_gives_back_what_litellm_had(tmp_path, litellm_had):
    """A second plugin on a Router would be a second health authority, and the first one's
    detach used to turn LiteLLM's cooldowns back on under it (then the second's left them off for
    good): refused, naming the Router's groups, and nothing of LiteLLM's state changes."""
    group = f"one-per-router-{int(litellm_had)}"
    router = router_for(group, disable_cooldowns=litellm_had)
    litellm_state = {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS}
    first = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/first.db"})
    attached_state = {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS}
    wrapper = vars(router)["acompletion"]

    with pytest.raises(AlreadyAttachedError) as refused:
        attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/second.db"})
    assert f"model groups: {group};" in str(refused.value)
    assert first.instance_id in str(refused.value) and "plugin.detach()" in str(refused.value)
    # The first is untouched and still routes, with LiteLLM's cooldowns off.
    assert {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS} == attached_state
    assert router.disable_cooldowns is True and vars(router)["acompletion"] is wrapper
    assert first.handler.plugin is first
    answer = await router.acompletion(
        model=group, messages=[{"role": "user", "content": "hi"}], mock_response="ok"
    )
    assert answer.choices[0].message.content == "ok" and first.book.started == 1

    first.detach()
    assert router.disable_cooldowns is litellm_had
    assert {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS} == litellm_state
    assert "acompletion" not in vars(router)
    # Detached, the Router takes a new plugin (how a plugin is replaced), which restores the same.
    second = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/second.db"})
    try:
        assert router.disable_cooldowns is True and registered(second.handler)
        assert vars(router)["acompletion"] is not wrapper
    finally:
        second.detach()
    assert router.disable_cooldowns is litellm_had
    assert {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS} == litellm_state
    assert "acompletion" not in vars(router)


def test_a_bad_configuration_changes_nothing_in_litellm():
    router = router_for("rollback-bad")
    before = {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS}
    with pytest.raises(FailoverConfigError, match=r"failover_settings\.metrics\.port"):
        attach(router, {"metrics": {"port": 70000}})
    assert router.disable_cooldowns is False
    assert {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS} == before


@pytest.mark.proxy
async def test_a_proxy_whose_plugin_cannot_start_serves_litellms_way_and_says_why(tmp_path, taken_port):
    """One worker, its metrics port taken by another program: the proxy runs on, detached, with
    one ERROR line naming the reason (before, the plugin stayed attached with cooldowns off)."""
    with running({name: FakeVLLMProcess(name, tokens_per_s=0) for name in ORDER}) as nodes:
        database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
        config = proxy_config(nodes, database_url, metrics={"port": taken_port})
        with ProxyProcess(config, tmp_path) as proxy:

            def detached() -> bool:
                return "litellm-failover could not start and has detached" in proxy.log_tail(400)

            await wait_until(detached, 30, "the detach line in the proxy's log")
            results = await run_load(openai_sender(client_for(proxy), "chat"), total=12, concurrency=3)
            assert all(r.ok for r in results)
            log = proxy.log_path.read_text(errors="replace")
    assert log.count("could not start and has detached") == 1
    assert f"failover_settings.metrics.port: port {taken_port}" in log
    assert not (tmp_path / "events.db").exists()  # nothing of the plugin ran: no store, no probes
