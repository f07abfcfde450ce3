"""Rescue (issue 12 §1) through the real LiteLLM proxy, enabled from config.yaml alone, on both
ends of the LiteLLM range (1.108.7 and 1.110.x, whose Router runs attempts differently).

A hung primary (p1) with requests in flight on it: non-streaming ones and streams that have not
started (held by a stalled engine first, so that all are on p1 before its probes fail). Every
deployment's own timeout is 20 s; with the rescue each request is answered by the standby (s1)
within the detection time (fault to ejection) plus 1 s. A slow but healthy p1
ejected by a false positive does not have its work doubled.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from fake_nodes import proxy_running, quick_probe_proxy_config, running, wait_all_healthy
from openai import AsyncOpenAI
from test_rescue_router import four_on_a_node_turned_slow
from waiting import wait_until

from litellm_failover.drill.loadgen import openai_sender
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.queries import list_events

pytestmark = [pytest.mark.proxy, pytest.mark.litellm_range]

TIERS = {"p1": 1, "s1": 2}
OWN_TIMEOUT_S = 20.0


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=400) for name in TIERS}) as started:
        yield started


def proxy_config(nodes, database_url: str, rescue: dict | None = None) -> dict:
    return quick_probe_proxy_config(nodes, TIERS, database_url, timeout_s=OWN_TIMEOUT_S, rescue=rescue or {})


@pytest.fixture
def proxy(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    with proxy_running(proxy_config(nodes, database_url), tmp_path, database_url) as process:
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
    # The six must be in flight on p1 when it is ejected. Hung outright first, p1 fails its
    # probes ~1 s later, and a loaded proxy can take longer than that to route six requests: the
    # late ones went straight to s1 and "6 held on p1" timed out. So p1's engine stalls first
    # (probes still pass) until all six are held, then p1 hangs whole: the fault's clock starts.
    nodes["p1"].set_fault("engine_hang")
    tasks = [asyncio.create_task(send(i, i % 2 == 1)) for i in range(6)]
    await wait_until(lambda: nodes["p1"].state()["waiting"] >= 6, timeout=10, what="6 held on p1")
    nodes["p1"].set_fault("hang")
    hung_wall, hung_mono = time.time(), time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=OWN_TIMEOUT_S / 2)
    await wait_until(lambda: nodes["p1"].state()["waiting"] == 0, timeout=2, what="originals cancelled")
    # What this host can do right now: the same six sent afresh (p1 is out, s1 answers them). On
    # a starved host (the proxy at a tenth of a core) six answers through the proxy took longer
    # than 1 s although every rescue went out within 1 ms of the ejection; the budget is then
    # what six fresh requests took, never less than the claimed 1 s.
    burst_started = time.monotonic()
    burst = await asyncio.gather(*(send(200 + i, i % 2 == 1) for i in range(6)))
    burst_s = time.monotonic() - burst_started
    await client.close()

    assert [r.error for r in results if not r.ok] == []
    assert {r.served_by for r in results} == {"s1"}
    assert [r.error for r in burst if not r.ok] == [] and {r.served_by for r in burst} == {"s1"}

    async def rescued() -> list[dict]:
        return await list_events(proxy.database_url, event_type="request_rescued", limit=100)

    await wait_until(lambda: _count(rescued, 6), timeout=5, what="6 request_rescued events")
    events = await rescued()
    assert len(events) == 6, "one rescue per request, none twice"
    assert {e["details"]["cause"] for e in events} == {"ejected"}
    assert {e["details"]["stream"] for e in events} == {False, True}
    ejections = [
        e
        for e in await list_events(proxy.database_url, event_type="state_change", limit=100)
        if e["deployment_id"] == "p1" and e["details"]["to_state"] == "unhealthy"
    ]
    detection_s = _wall(ejections[0]["created_at"]) - hung_wall
    slowest_s = max(r.ended_at for r in results) - hung_mono
    budget_s = max(1.0, burst_s)
    assert slowest_s <= detection_s + budget_s, (
        f"slowest {slowest_s:.2f}s, detection {detection_s:.2f}s, six fresh requests {burst_s:.2f}s"
    )


async def _count(read, wanted: int) -> bool:
    return len(await read()) >= wanted


def chats(node: FakeVLLMProcess) -> int:
    return node.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)


async def test_a_false_positive_behind_the_proxy_does_not_double_the_work(nodes, tmp_path):
    """A slow but healthy p1 (3 s an answer; its probes are slower than ``max_probe_latency_s``)
    is ejected. ``rescue.max_per_ejection: 1``: one request in flight on it is moved to s1 (its
    original cancelled on p1), the other three finish on p1. Each request is generated once more
    at most: s1 sees one copy of one request, never of the others."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    config = proxy_config(nodes, database_url, rescue={"max_per_ejection": 1})
    with proxy_running(config, tmp_path, database_url) as proxy:
        await wait_all_healthy(database_url, TIERS)
        client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=60)
        send = openai_sender(client, "chat")
        for i, stream in enumerate((False, True)):
            assert (await send(100 + i, stream)).ok
        before = {name: chats(node) for name, node in nodes.items()}
        results = await four_on_a_node_turned_slow(nodes["p1"], send)
        await client.close()

        async def rescued() -> list[dict]:
            return await list_events(database_url, event_type="request_rescued", limit=100)

        await wait_until(lambda: _count(rescued, 1), timeout=5, what="the request_rescued event")
        events = await rescued()
    assert [r.error for r in results if not r.ok] == []
    assert sorted(r.served_by for r in results) == ["p1", "p1", "p1", "s1"]
    assert chats(nodes["p1"]) - before["p1"] == 4
    assert chats(nodes["s1"]) - before["s1"] == 1
    assert len(events) == 1 and events[0]["details"]["cause"] == "ejected"
