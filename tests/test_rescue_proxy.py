"""Rescue (issue 12 §1) through the real LiteLLM proxy, enabled from config.yaml alone.

A hung primary (p1) with requests in flight on it: non-streaming ones and streams that have not
started. Every deployment's own timeout is 20 s; with the rescue each request is answered by the
standby (s1) within the detection time (fault to ejection) plus 1 s.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from fake_nodes import proxy_running, running, tiered_model_list, wait_all_healthy
from openai import AsyncOpenAI
from waiting import wait_until

from litellm_failover.drill.loadgen import openai_sender
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.queries import list_events

pytestmark = pytest.mark.proxy

TIERS = {"p1": 1, "s1": 2}
OWN_TIMEOUT_S = 20.0


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=400) for name in TIERS}) as started:
        yield started


@pytest.fixture
def proxy(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    config = {
        "model_list": tiered_model_list(nodes, TIERS, timeout_s=OWN_TIMEOUT_S),
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": {
            "database_url": database_url,
            "health": {"interval_s": 0.25, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0},
        },
    }
    with proxy_running(config, tmp_path, database_url) as process:
        yield process


def _wall(created_at: object) -> float:
    stamp = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(str(created_at))
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


async def test_a_hung_primary_behind_the_proxy_holds_no_request(proxy, nodes):
    await wait_all_healthy(proxy.database_url, TIERS)
    client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=60)
    send = openai_sender(client, "chat")
    for i, stream in enumerate((False, True)):  # LiteLLM builds its clients on the first calls
        assert (await send(100 + i, stream)).ok
    nodes["p1"].set_fault("hang")
    hung_wall, hung_mono = time.time(), time.monotonic()
    tasks = [asyncio.create_task(send(i, i % 2 == 1)) for i in range(6)]
    await wait_until(lambda: nodes["p1"].state()["waiting"] >= 6, timeout=5, what="6 held on p1")
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=OWN_TIMEOUT_S / 2)
    await wait_until(lambda: nodes["p1"].state()["waiting"] == 0, timeout=2, what="originals cancelled")
    await client.close()

    assert [r.error for r in results if not r.ok] == []
    assert {r.served_by for r in results} == {"s1"}

    async def rescued() -> list[dict]:
        return await list_events(proxy.database_url, event_type="request_rescued", limit=100)

    await wait_until(lambda: _count(rescued, 6), timeout=5, what="6 request_rescued events")
    events = await rescued()
    assert {e["details"]["cause"] for e in events} == {"ejected"}
    assert {e["details"]["stream"] for e in events} == {False, True}
    ejections = [
        e
        for e in await list_events(proxy.database_url, event_type="state_change", limit=100)
        if e["deployment_id"] == "p1" and e["details"]["to_state"] == "unhealthy"
    ]
    detection_s = _wall(ejections[0]["created_at"]) - hung_wall
    slowest_s = max(r.ended_at for r in results) - hung_mono
    assert slowest_s <= detection_s + 1.0, f"slowest {slowest_s:.2f}s, detection {detection_s:.2f}s"


async def _count(read, wanted: int) -> bool:
    return len(await read()) >= wanted
