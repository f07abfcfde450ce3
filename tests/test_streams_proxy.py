"""Mid-stream failover through the real LiteLLM proxy, enabled from config.yaml alone, read with
the openai SDK (``stream=True``) as a client application would.

One proxy for the module, in front of three fake vLLM processes in three tiers (p1, p2, s1), so
a stream starts on p1 and a break moves it down the tiers. Outlier ejection is set out of reach:
each scenario's faults must not change where the next one starts. What the plugin decided is
read back from the events table, as an operator would.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import openai
import pytest
from fake_nodes import proxy_running, running, tiered_model_list, wait_all_healthy, wait_events
from streams_support import QUESTION, AtWords, Frozen, prefix, read_stream

from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.store.queries import list_events

pytestmark = pytest.mark.proxy

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2, "s1": 3}
INTER_TOKEN_TIMEOUT_S = 1.0


def proxy_config(nodes: dict[str, FakeVLLMProcess], database_url: str) -> dict:
    return {
        "model_list": tiered_model_list(nodes, TIERS),
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": {
            "database_url": database_url,
            "health": {"interval_s": 0.5, "failure_interval_s": 0.1},
            "outlier": {"consecutive_errors": 1000, "eject_on_connect_error": False},
            "streams": {"inter_token_timeout_s": INTER_TOKEN_TIMEOUT_S},
        },
    }


# Words a second. The kill and freeze tests act on p1 when the client has 5 words, and p1 must
# still be sending then: at 200 a second p1 wrote the other 19 within 95 ms, and a client that far
# behind (a loaded host, the proxy in between) got p1's whole answer with nothing left to resume.
# At 50 a second the client may lag p1 by about 0.4 s.
SPEED = {"p1": 50, "p2": 200, "s1": 200}


@pytest.fixture(scope="module")
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=SPEED[name]) for name in TIERS}) as started:
        yield started


@pytest.fixture(scope="module")
def proxy(nodes, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("streams-proxy")
    database_url = f"sqlite+aiosqlite:///{workdir}/events.db"
    with proxy_running(proxy_config(nodes, database_url), workdir, database_url) as process:
        yield process


@pytest.fixture(autouse=True)
def clear_faults(nodes):
    for node in nodes.values():
        node.clear_fault()
    yield
    for node in nodes.values():
        if node.alive:
            node.clear_fault()


@pytest.fixture
async def client(proxy):
    await wait_all_healthy(proxy.database_url, TIERS)
    sdk = openai.AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
    yield sdk
    await sdk.close()


async def ask(client: openai.AsyncOpenAI, **extra):
    extra.setdefault("stream_options", {"include_usage": True})
    return await client.chat.completions.create(model="chat", messages=QUESTION, stream=True, **extra)


def now() -> datetime:
    """Where a test's own events begin. The proxy is shared by the module and its writer flushes
    on its own schedule (every 0.2 s), so the events of the test before may still reach the table
    after this test has started: counting the table's rows at the start would take them for this
    test's. Each event carries the time the plugin decided it, before the test that caused it
    ended."""
    return datetime.now(UTC)


async def events_since(proxy: ProxyProcess, event_type: str, since: datetime) -> list[dict]:
    """The events of a type decided at or after ``since`` that are in the table now (oldest first)."""
    try:
        return await list_events(proxy.database_url, since=since, event_type=event_type, limit=1000)
    except Exception:
        return []  # the table appears with the plugin's first flush


async def new_events(proxy: ProxyProcess, event_type: str, since: datetime, count: int) -> list[dict]:
    """The events of a type decided at or after ``since`` (oldest first), once there are ``count``."""
    return await wait_events(proxy.database_url, event_type, lambda found: len(found) >= count, since=since)


@pytest.mark.parametrize("after", [1, 2, 12, DEFAULT_WORDS - 1], ids=["first", "second", "middle", "last"])
async def test_a_cut_stream_reaches_the_client_whole(proxy, nodes, client, after):
    since = now()
    nodes["p1"].set_fault("drop_midstream", after_chunks=after)
    seen = await read_stream(await ask(client))
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    # What p1 delivered: at most the ``after`` words it sent. Fewer when the proxy was slow to read:
    # its HTTP client (aiohttp) raises the connection error ahead of the bytes it had buffered.
    delivered = sum(
        len(c.choices[0].delta.content or "")
        for c in seen.chunks
        if c.system_fingerprint == "p1" and c.choices
    )
    assert delivered <= len(prefix(after))
    if seen.served_by == ["p2"]:
        # No text of p1's reached the client: either LiteLLM retried the stream itself (no content
        # had reached the Router, no event) or the plugin restarted it on p2 from the start.
        resumed = len(await events_since(proxy, "stream_resumed", since))
        if resumed:
            [event] = await new_events(proxy, "stream_resumed", since, 1)
            assert event["details"]["chars_sent"] == 0 and event["to_deployment"] == "p2"
        return
    assert seen.served_by == ["p1", "p2"]
    [event] = await new_events(proxy, "stream_resumed", since, 1)
    assert (event["from_deployment"], event["to_deployment"]) == ("p1", "p2")
    assert event["details"]["chars_sent"] == delivered and event["details"]["exact"] is True
    assert event["details"]["gap_ms"] >= 0 and event["instance_id"]


async def test_two_nodes_dropping_in_one_stream_behind_the_proxy(proxy, nodes, client):
    since = now()
    nodes["p1"].set_fault("drop_midstream", after_chunks=5)
    # p2 goes on after word 4 (the last word sent may be cut inside), writes word 5 again, then 6.
    nodes["p2"].set_fault("drop_midstream", after_chunks=7)
    seen = await read_stream(await ask(client))
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by == ["p1", "p2", "s1"]
    first, second = await new_events(proxy, "stream_resumed", since, 2)
    assert [(e["from_deployment"], e["to_deployment"]) for e in (first, second)] == [
        ("p1", "p2"),
        ("p2", "s1"),
    ]
    assert second["details"]["chars_sent"] == len(prefix(11))
    assert second["details"]["chars_kept"] == len(prefix(10))


async def test_without_usage_requested_the_proxy_sends_none(proxy, nodes, client):
    nodes["p1"].set_fault("drop_midstream", after_chunks=6)
    stream = await client.chat.completions.create(model="chat", messages=QUESTION, stream=True)
    seen = await read_stream(stream)
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS, usage=False)


async def test_a_stream_nothing_can_continue_ends_with_an_error_the_client_sees(proxy, nodes, client):
    since = now()
    for node in nodes.values():
        node.set_fault("drop_midstream", after_chunks=4)
    seen = await read_stream(await ask(client))
    assert isinstance(seen.error, openai.APIError), seen.error
    assert "could not be continued" in str(seen.error)
    # 4 + 3 + 3 words: each continuation wrote the last word again (skipped).
    assert seen.text == prefix(10) and seen.finish_reasons == []  # never a quiet, truncated "stop"
    [event] = await new_events(proxy, "stream_broken", since, 1)
    assert event["deployment_id"] == "s1" and event["details"]["chars_sent"] == len(prefix(10))


async def test_a_frozen_node_is_left_after_the_inter_token_timeout(proxy, nodes, client):
    since = now()
    with Frozen(nodes["p1"].pid) as freeze:
        seen = await read_stream(await ask(client), on_chunk=AtWords(5, freeze))
        assert freeze.frozen
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by == ["p1", "p2"]
    [event] = await new_events(proxy, "stream_resumed", since, 1)
    assert "inter_token_timeout_s" in event["details"]["cause"]
    assert event["details"]["gap_ms"] >= INTER_TOKEN_TIMEOUT_S * 1000


async def test_the_gap_a_client_sees_at_a_break_behind_the_proxy(proxy, nodes, client):
    """Measured: the silence between the last chunk before a break and the first continued one,
    as the plugin records it, over 10 resumed streams (the figure the README quotes)."""
    since = now()
    nodes["p1"].set_fault("drop_midstream", after_chunks=12)
    resumed = 0
    for _ in range(10):
        seen = await read_stream(await ask(client))
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        resumed += seen.served_by == ["p1", "p2"]
    assert resumed >= 5  # p1 is the primary; a probe round may briefly route around it
    gaps = sorted(e["details"]["gap_ms"] for e in await new_events(proxy, "stream_resumed", since, resumed))
    median = statistics.median(gaps)
    print(f"\nstream resume gap (proxy, {len(gaps)} breaks): median {median:.1f} ms, max {gaps[-1]:.1f} ms")
    assert median < 250


async def test_a_node_killed_mid_answer_costs_the_client_nothing(proxy, nodes, client):
    since = now()
    kill = AtWords(5, nodes["p1"].kill)  # SIGKILL: the kernel resets the connection mid-stream
    try:
        seen = await read_stream(await ask(client), on_chunk=kill)
    finally:
        nodes["p1"].restart()
    assert kill.chars is not None
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by == ["p1", "p2"]
    [event] = await new_events(proxy, "stream_resumed", since, 1)
    assert event["from_deployment"] == "p1" and event["details"]["chars_sent"] >= kill.chars
