"""Two real LiteLLM proxy processes sharing one Redis: what replica A sees moves replica B.

Both proxies load the plugin from config.yaml alone, with the same model list (p1 and p2 primary,
s1 standby, fake vLLM processes: test_proxy_failover's), the same ``redis_url`` and a per-test
channel; each writes its own
SQLite events table, which is how the test reads what each replica decided. Probes run every 30 s
on both, so the dead node is found by A's traffic and B can only have learned it from the fleet.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import test_proxy_failover
from openai import AsyncOpenAI
from waiting import wait_until

from litellm_failover.drill.loadgen import openai_sender
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.store.queries import list_deployment_states, list_events

pytestmark = [pytest.mark.proxy, pytest.mark.redis]
pytest_plugins = ["services"]

# Shared fixtures: fake vLLM processes p1, p2 (primary) and s1 (standby); the channel per test
# comes from services.
nodes = test_proxy_failover.nodes
proxy_config = test_proxy_failover.proxy_config


@pytest.fixture
def replicas(nodes, tmp_path, redis_base_url, channel):
    made = {}
    for name in ("replica-a", "replica-b"):
        database_url = f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
        config = proxy_config(
            nodes,
            database_url,
            instance_id=name,
            health={"interval_s": 30},
            redis_url=redis_base_url,
            fleet={"channel": channel},
        )
        proxy = ProxyProcess(config, tmp_path / name)
        proxy.database_url = database_url
        made[name] = proxy
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # each start only waits on its child
            for future in [pool.submit(proxy.start) for proxy in made.values()]:
                future.result()
        yield made["replica-a"], made["replica-b"]
    finally:
        for proxy in made.values():
            proxy.stop()


def send_through(proxy: ProxyProcess):
    client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
    return openai_sender(client, "chat")


async def state_of(proxy: ProxyProcess, deployment: str) -> str | None:
    try:
        rows = await list_deployment_states(proxy.database_url)
    except Exception:
        return None  # the table may not exist before the plugin's first flush
    return {row["deployment_id"]: row["state"] for row in rows}.get(deployment)


async def test_a_failure_replica_a_sees_moves_replica_b_before_b_tries_the_dead_node(replicas, nodes):
    proxy_a, proxy_b = replicas
    for proxy in replicas:
        await wait_until(lambda p=proxy: _healthy(p), 15, f"{proxy.url}: p1 state row")
    send_a, send_b = send_through(proxy_a), send_through(proxy_b)
    before = [await send_b(i, False) for i in range(12)]
    assert "p1" in {r.served_by for r in before}  # B shares the primary tier out while p1 lives

    nodes["p1"].kill()  # SIGKILL: connections to p1 are refused from now on
    sent = iter(range(100, 200))

    async def a_ejected() -> bool:
        result = await send_a(next(sent), False)  # p1 refuses; A retries on p2 and ejects p1
        assert result.ok and result.served_by == "p2"
        return await state_of(proxy_a, "p1") == "unhealthy"

    await wait_until(a_ejected, 10, "replica A ejects p1 from its own traffic")

    async def b_moved() -> bool:
        return await state_of(proxy_b, "p1") == "unhealthy"

    await wait_until(b_moved, 5, "replica B marks p1 unhealthy")
    after = [await send_b(i, False) for i in range(200, 210)]
    assert all(r.ok for r in after) and {r.served_by for r in after} == {"p2"}

    events_a = [
        e
        for e in await list_events(proxy_a.database_url, event_type="state_change")
        if e["deployment_id"] == "p1"
    ]
    events_b = await list_events(proxy_b.database_url, limit=1000)
    ejected_a = next(e for e in events_a if e["details"]["to_state"] == "unhealthy")
    assert ejected_a["details"]["source"] == "traffic" and ejected_a["instance_id"] == "replica-a"
    changes_b = [e for e in events_b if e["event_type"] == "state_change" and e["deployment_id"] == "p1"]
    # B's only change to p1 came from the fleet: B never sent p1 a request that failed.
    assert [(e["details"]["source"], e["details"]["to_state"]) for e in changes_b] == [("fleet", "unhealthy")]
    assert changes_b[0]["details"]["origin_instance"] == "replica-a"
    assert changes_b[0]["reason"].startswith("ejected by replica-a: ")
    assert [e for e in events_b if e["event_type"] == "request_failover"] == []
    # How long the ejection took to reach B is measured by bench/fleet_propagation.py.


async def _healthy(proxy: ProxyProcess) -> bool:
    return await state_of(proxy, "p1") == "healthy"
