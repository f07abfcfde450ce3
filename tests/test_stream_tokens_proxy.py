"""Exact token accounting across a splice (issue 12 §2), through the real LiteLLM proxy, read with
the openai SDK as a client would.

The fake vLLM processes send several tokens per chunk (p1: 3; p2: 1, 3, none, 2 in turn; s1: 2),
so counting chunks would give the continuation the wrong ``max_tokens``. One word of the fake's
answer is one token: a stitched answer of N tokens is exactly the answer's first N words.
"""

from __future__ import annotations

import openai
import pytest
from fake_nodes import proxy_running, running, tiered_model_list, wait_all_healthy
from streams_support import QUESTION, prefix, read_stream
from waiting import wait_until

from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.store.queries import list_events

pytestmark = [pytest.mark.proxy, pytest.mark.litellm_range]

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2, "s1": 3}
CHUNK_TOKENS = {"p1": "3", "p2": "1,3,0,2", "s1": "2"}
PROMPT_TOKENS = sum(len(m["content"].split()) for m in QUESTION)  # how the fake counts a prompt


@pytest.fixture(scope="module")
def nodes():
    made = {
        name: FakeVLLMProcess(name, tokens_per_s=200, extra_args=["--chunk-tokens", CHUNK_TOKENS[name]])
        for name in TIERS
    }
    with running(made) as started:
        yield started


@pytest.fixture(scope="module")
def proxy(nodes, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stream-tokens-proxy")
    database_url = f"sqlite+aiosqlite:///{workdir}/events.db"
    config = {
        "model_list": tiered_model_list(nodes, TIERS),
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": {
            "database_url": database_url,
            "health": {"interval_s": 0.5, "failure_interval_s": 0.1},
            "outlier": {"consecutive_errors": 1000, "eject_on_connect_error": False},
        },
    }
    with proxy_running(config, workdir, database_url) as process:
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


async def resumes(proxy) -> list[dict]:
    """The proxy's stored ``stream_resumed`` events, oldest first."""
    try:
        rows = await list_events(proxy.database_url, event_type="stream_resumed", limit=1000)
    except Exception:
        return []  # the table appears with the plugin's first flush
    return sorted(rows, key=lambda e: e["created_at"])


async def _more(proxy, count: int) -> bool:
    return len(await resumes(proxy)) >= count


async def ask(client: openai.AsyncOpenAI, **extra):
    return await client.chat.completions.create(model="chat", messages=QUESTION, stream=True, **extra)


async def test_max_tokens_holds_over_multi_token_chunks_and_the_usage_adds_up(nodes, client, proxy):
    nodes["p1"].set_fault("drop_midstream", after_chunks=3)  # 9 tokens in 3 chunks
    nodes["p2"].set_fault("drop_midstream", after_chunks=4)  # 6 more in 4 chunks, one empty
    limit = 17
    before = len(await resumes(proxy))
    seen = await read_stream(await ask(client, max_tokens=limit, stream_options={"include_usage": True}))
    # A node's abort (RST) may discard chunks the proxy had not read yet: the client then has
    # fewer of p1's words, or none (LiteLLM's own retry moved the request to p2 before any
    # content). Either way every part is counted by what reached the client.
    assert seen.error is None and seen.served_by in (["p1", "p2", "s1"], ["p2", "s1"])
    assert seen.text == prefix(limit) and seen.finish_reasons == ["length"]
    [usage] = seen.usages
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        PROMPT_TOKENS,
        limit,
        PROMPT_TOKENS + limit,
    )
    assert len(seen.ids) == 1
    # Each continuation's event says where it was cut and what the kept text took: one word a
    # token, counted by the engines themselves.
    continued = len(seen.served_by) - 1
    if continued:
        await wait_until(lambda: _more(proxy, before + continued), timeout=10, what="stream_resumed events")
    for event in (await resumes(proxy))[before:]:
        details = event["details"]
        assert details["chars_kept"] + details["chars_regenerated"] == details["chars_sent"]
        assert details["tokens_kept"] == len(seen.text[: details["chars_kept"]].split())
        if details["chars_sent"]:  # not a restart from the top: the part that broke had text
            assert details["tokens_source"] == "engine_usage" and details["tokens_generated"] >= 1


async def test_a_whole_answer_over_a_splice_and_no_usage_unasked(nodes, client):
    nodes["p1"].set_fault("drop_midstream", after_chunks=4)  # 12 tokens
    seen = await read_stream(await ask(client, stream_options={"include_usage": True}))
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by in (["p1", "p2"], ["p2"]) and seen.usages[0].prompt_tokens == PROMPT_TOKENS
    # A client that asked for no usage gets none, though the plugin asked the engines for theirs.
    seen = await read_stream(await ask(client, max_tokens=14))
    assert seen.error is None and seen.text == prefix(14) and seen.finish_reasons == ["length"]
    assert seen.usages == [] and all(chunk.usage is None for chunk in seen.chunks)
