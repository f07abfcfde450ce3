"""A stream mid-answer on a node that is ejected for not answering (issue 12 §1), through the real
LiteLLM proxy, enabled from config.yaml alone and read with the openai SDK.

p1 serves first and p2 is its standby, both fake vLLM processes, both probed.
``streams.inter_token_timeout_s`` is left at its default (30 s). What the plugin decided is read
back from the events table, as an operator would.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import openai
import pytest
from fake_nodes import proxy_running, quick_probe_proxy_config, running, wait_all_healthy
from streams_support import QUESTION, AtWords, Frozen, read_stream
from waiting import wait_until

from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import expected_answer
from litellm_failover.store.queries import list_events

pytestmark = [pytest.mark.proxy, pytest.mark.litellm_range]

TIERS = {"p1": 1, "p2": 2}
WORDS = 120
OWN_TIMEOUT_S = 60.0  # LiteLLM's own timeouts: far beyond anything a test waits


@pytest.fixture
def nodes():
    made = {name: FakeVLLMProcess(name, words=WORDS, tokens_per_s=20) for name in TIERS}
    with running(made) as started:
        yield started


@pytest.fixture
def proxy(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    config = quick_probe_proxy_config(nodes, TIERS, database_url, timeout_s=OWN_TIMEOUT_S)
    with proxy_running(config, tmp_path, database_url) as process:
        yield process


@pytest.fixture
async def client(proxy):
    await wait_all_healthy(proxy.database_url, TIERS)
    sdk = openai.AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=60)
    yield sdk
    await sdk.close()


async def ask(client: openai.AsyncOpenAI):
    return await client.chat.completions.create(
        model="chat", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )


def chats(node: FakeVLLMProcess) -> int:
    return node.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)


def _wall(created_at: object) -> float:
    stamp = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(str(created_at))
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


async def events_of(proxy, event_type: str, count: int) -> list[dict]:
    found: list[dict] = []

    async def written() -> bool:
        nonlocal found
        try:
            found = await list_events(proxy.database_url, event_type=event_type, limit=100)
        except Exception:
            return False  # the table appears with the plugin's first flush
        return len(found) >= count

    await wait_until(written, timeout=10, what=f"{count} {event_type} event(s)")
    return found


async def ejection_of(proxy, deployment_id: str) -> dict:
    async def found() -> bool:
        return bool(await _ejections(proxy, deployment_id))

    await wait_until(found, timeout=10, what=f"{deployment_id} ejected")
    return (await _ejections(proxy, deployment_id))[0]


async def _ejections(proxy, deployment_id: str) -> list[dict]:
    try:
        rows = await list_events(proxy.database_url, event_type="state_change", limit=100)
    except Exception:
        return []
    return [
        e for e in rows if e["deployment_id"] == deployment_id and e["details"]["to_state"] == "unhealthy"
    ]


async def test_a_stream_on_a_hung_node_behind_the_proxy_resumes_within_detection_plus_1s(
    proxy, nodes, client
):
    stream = await ask(client)
    frozen: list[tuple[float, float]] = []  # (wall, monotonic)
    with Frozen(nodes["p1"].pid) as freeze:

        def hang() -> None:
            freeze()
            frozen.append((time.time(), time.monotonic()))

        seen = await asyncio.wait_for(read_stream(stream, on_chunk=AtWords(5, hang)), timeout=20)
    seen.assert_one_unbroken_answer(expected_answer(QUESTION, WORDS), words=WORDS)
    assert seen.served_by == ["p1", "p2"]
    frozen_wall, frozen_mono = frozen[0]
    detection_s = _wall((await ejection_of(proxy, "p1"))["created_at"]) - frozen_wall
    resumed_s = next(at for at in seen.arrived if at > frozen_mono) - frozen_mono
    assert resumed_s <= detection_s + 1.0, f"resumed after {resumed_s:.2f}s, detection {detection_s:.2f}s"
    [event] = await events_of(proxy, "stream_resumed", 1)
    assert "p1 was ejected" in event["details"]["cause"]
    assert chats(nodes["p1"]) == 1 and chats(nodes["p2"]) == 1


async def test_a_falsely_ejected_slow_node_behind_the_proxy_is_not_duplicated(proxy, nodes, client):
    """p1's probes time out (``slow`` holds new requests, probes included, 5 s), but the stream it
    already serves keeps flowing: the client gets it from p1 alone, and p2 never sees it."""
    stream = await ask(client)
    slow = AtWords(5, lambda: nodes["p1"].set_fault("slow", delay_s=5.0))
    reading = asyncio.create_task(read_stream(stream, on_chunk=slow))
    await ejection_of(proxy, "p1")
    assert not reading.done()  # ejected while the stream was still flowing
    seen = await asyncio.wait_for(reading, timeout=20)
    assert seen.error is None and seen.text == expected_answer(QUESTION, WORDS)
    assert seen.served_by == ["p1"]
    assert await list_events(proxy.database_url, event_type="stream_resumed", limit=10) == []
    nodes["p1"].clear_fault()
    assert chats(nodes["p1"]) == 1 and chats(nodes["p2"]) == 0
