"""Exact token accounting across a splice (issue 12 §2), through the real ``litellm.Router``.

Engines do not send one token per chunk: the fake vLLM nodes here send 1, 3, or a varying number
of tokens per chunk, with chunks that carry no text at all (``chunk_tokens``). The client's
``max_tokens`` must hold over the whole stitched answer and the final usage must add up, which
only the engines' own counts allow (``stream_options.continuous_usage_stats``). One word of the
fake's answer is one token, so a stitched answer of N tokens is exactly the answer's first N words.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import litellm
import pytest
from fake_nodes import serving, tiered_model_list
from streams_support import QUESTION, prefix, read_stream

from litellm_failover import attach
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2, "s1": 3}
PATTERNS = {"one": (1,), "three": (3,), "varying": (1, 3, 0, 2)}
PROMPT_TOKENS = sum(len(m["content"].split()) for m in QUESTION)  # how the fake counts a prompt


def tokens_in(pattern: Sequence[int], chunks: int) -> int:
    """Tokens a node with this pattern sent in its first ``chunks`` chunks."""
    return sum(itertools.islice(itertools.cycle(pattern), chunks))


def nodes(**patterns: Sequence[int]) -> dict[str, FakeVLLM]:
    return {name: FakeVLLM(name, tokens_per_s=0, chunk_tokens=patterns.get(name, (1,))) for name in TIERS}


@pytest.fixture
def make_plugin(tmp_path):
    made = []

    def make(servers, settings=None, *, model: str = "hosted_vllm/fake-model"):
        model_list = tiered_model_list(servers, TIERS, model=model, api_key="fake", probe=False)
        router = litellm.Router(model_list=model_list, num_retries=2, retry_after=0)
        merged = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db", **(settings or {})}
        plugin = attach(router, merged)
        made.append(plugin)
        return router, plugin

    yield make
    for plugin in made:
        plugin.detach()


async def ask(router, **extra):
    extra.setdefault("stream_options", {"include_usage": True})
    return await router.acompletion(model="chat", messages=QUESTION, stream=True, **extra)


def assert_usage(seen, completion: int) -> None:
    [usage] = seen.usages
    assert getattr(seen.chunks[-1], "usage", None) is usage, "the usage chunk is the last one"
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, completion)
    assert usage.total_tokens == PROMPT_TOKENS + completion


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_max_tokens_holds_over_the_stitched_answer(make_plugin, pattern):
    limit, cut = 17, 4
    async with serving(nodes(p1=PATTERNS[pattern], p2=(2, 0, 3))) as servers:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=cut)
            seen = await read_stream(await ask(router, max_tokens=limit))
            assert seen.error is None and seen.text == prefix(limit)
            assert seen.finish_reasons == ["length"] and seen.served_by == ["p1", "p2"]
            # The continuation may generate what the engine had not: tokens, not chunks.
            continued = servers["p2"].received[-1]
            assert continued.max_tokens == limit - tokens_in(PATTERNS[pattern], cut)
            # Both parts were asked for the engine's running count.
            assert servers["p1"].received[-1].continuous_usage and continued.continuous_usage
            assert_usage(seen, limit)


async def test_the_whole_answer_adds_up_over_two_breaks(make_plugin):
    limit = 20
    async with serving(nodes(p1=(3,), p2=(1, 3, 0, 2), s1=(2,))) as servers:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=2)  # 6 tokens
            servers["p2"].set_fault("drop_midstream", after_chunks=4)  # 6 more, in 3 text chunks
            seen = await read_stream(await ask(router, max_tokens=limit))
            assert seen.error is None and seen.served_by == ["p1", "p2", "s1"]
            assert seen.text == prefix(limit) and seen.finish_reasons == ["length"]
            assert [servers[n].received[-1].max_tokens for n in ("p2", "s1")] == [limit - 6, limit - 12]
            assert_usage(seen, limit)
            # Without a limit the answer is the uninterrupted one, and so is its usage.
            servers["p1"].set_fault("drop_midstream", after_chunks=3)
            seen = await read_stream(await ask(router))
            seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
            assert seen.usages[0].prompt_tokens == PROMPT_TOKENS


async def test_a_cut_at_the_limit_by_the_engines_count_ends_the_answer(make_plugin):
    async with serving(nodes(p1=(3,))) as servers:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=2)  # 2 chunks, 6 tokens: all of it
            seen = await read_stream(await ask(router, max_tokens=6))
            assert seen.error is None and seen.text == prefix(6) and seen.finish_reasons == ["length"]
            assert servers["p2"].received == type(servers["p2"].received)()  # nothing asked of p2
            assert_usage(seen, 6)


async def test_a_client_that_asked_no_usage_gets_none(make_plugin):
    async with serving(nodes(p1=(1, 3, 0, 2), p2=(3,))) as servers:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=4)
            stream = await router.acompletion(model="chat", messages=QUESTION, stream=True, max_tokens=15)
            seen = await read_stream(stream)
            assert seen.error is None and seen.text == prefix(15) and seen.finish_reasons == ["length"]
            assert servers["p2"].received[-1].max_tokens == 15 - 6
            # The plugin asked both engines for usage to count with; none of it reaches the client.
            assert servers["p1"].received[-1].include_usage and servers["p2"].received[-1].include_usage
            assert seen.usages == [] and all(getattr(c, "usage", None) is None for c in seen.chunks)


async def test_without_an_engine_count_the_estimate_errs_on_the_short_side(make_plugin):
    # A hosted kind (openai-compatible) has no running count: the part that broke is estimated
    # as the larger of its text chunks and the tokenizer's count of its text.
    settings = {"streams": {"inexact_continuation": "best_effort"}}
    limit = 16
    async with serving(nodes(p1=(3,))) as servers:
        router, plugin = make_plugin(servers, settings, model="openai/fake-model")
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=2)  # 6 tokens in 2 chunks
            seen = await read_stream(await ask(router, max_tokens=limit))
            assert seen.error is None and seen.text.startswith(prefix(6))
            assert not servers["p1"].received[-1].continuous_usage  # not asked of a hosted kind
            estimate = max(2, litellm.token_counter(model="openai/fake-model", text=prefix(6)))
            continued = servers["p2"].received[-1]
            assert continued.max_tokens == limit - estimate <= limit - 6  # never past the limit
            [usage] = seen.usages
            assert usage.completion_tokens == limit
