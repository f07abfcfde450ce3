"""The whole chain: a real ``litellm.Router`` with the plugin attached, fake vLLM servers, the
primary killed, and the failover alert arriving at a real local receiver (webhook and apprise)."""

from __future__ import annotations

import litellm
import pytest
from alert_receiver import AlertReceiver
from test_router_failover import FAST_HEALTH, deployments
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.alerts import Alerter
from litellm_failover.providers.fake.vllm import FakeVLLM


@pytest.fixture
async def receiver():
    async with AlertReceiver() as server:
        yield server


async def served_by(router: litellm.Router) -> str:
    response = await router.acompletion(model="chat", messages=[{"role": "user", "content": "hi"}])
    return response._hidden_params["model_id"]


async def test_killing_the_primary_sends_a_failover_alert(tmp_path, receiver):
    servers = {name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "s1")}
    for server in servers.values():
        await server.start()
    router = litellm.Router(model_list=deployments(servers), num_retries=2, retry_after=0)
    plugin = attach(
        router,
        {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db",
            "health": FAST_HEALTH,
            "alerts": {
                "webhook_urls": [receiver.url("/hook")],
                "webhook_headers": {"Authorization": "Bearer test-token"},
                "apprise_urls": [f"json://127.0.0.1:{receiver.port}/apprise"],
            },
        },
    )
    alerter = Alerter(plugin.settings.alerts, instance_id=plugin.instance_id, emit=plugin.core.emit)
    plugin.core.listeners.append(alerter.on_event)
    try:
        async with plugin:
            await alerter.start()
            assert await served_by(router) == "p1"
            await servers["p1"].stop()  # the primary dies

            def failover_alert() -> dict | None:
                found = [
                    b for b in receiver.delivered("/hook") if b["type"] == "failover" and b["to"] == "s1"
                ]
                return found[0] if found else None

            took = await wait_until(failover_alert, timeout=10, what="the failover alert at the receiver")
            print(f"failover alert at the receiver {took:.2f} s after the primary was killed")
            alert = failover_alert()
            assert alert is not None
            assert (alert["group"], alert["from"], alert["to"]) == ("chat", "p1", "s1")
            assert alert["instance"] == plugin.instance_id
            assert alert["severity"] == "warning"  # moved to the standby tier
            assert alert["details"]["from_tier"] == 1 and alert["details"]["to_tier"] == 2
            assert alert["reason"]  # why p1 was ejected, as the core said it
            await wait_until(
                lambda: any("p1 -> s1" in b["title"] for b in receiver.delivered("/apprise")),
                timeout=10,
                what="the same alert through apprise",
            )
            assert await served_by(router) == "s1"
            await alerter.stop()
            stats = alerter.stats()
            assert stats["sent"] >= 2 and stats["failed"] == 0 and stats["dropped"] == 0
    finally:
        await alerter.stop()
        plugin.detach()
        for server in servers.values():
            await server.stop()
