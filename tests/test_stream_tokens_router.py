"""Exact token accounting across a splice (issue 12 §2), through the real ``litellm.Router``.

Engines do not send one token per chunk: the fake vLLM nodes here send 1, 3, or a varying number
of tokens per chunk, with chunks that carry no text at all (``chunk_tokens``). The client's
``max_tokens`` must hold over the whole stitched answer and the final usage must add up, which
only the engines' own counts allow (``stream_options.continuous_usage_stats``). One word of the
fake's answer is one token, so a stitched answer of N tokens is exactly the answer's first N words.

A continuation goes on from a stable cut (``providers.retokenize``): the last word the client has
may be cut inside (the stream cannot tell), so the model writes it again and the plugin skips it;
the cut is taken back to a chunk boundary whose running count is known, so the continuation's
``max_tokens`` is the client's limit less exactly the tokens kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import litellm
import pytest
from fake_nodes import serving, tiered_model_list
from litellm.types.router import Deployment
from streams_support import QUESTION, prefix, read_stream

from litellm_failover import attach
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM

# Both ends of the supported LiteLLM range (.ci/run).
pytestmark = pytest.mark.litellm_range

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2, "s1": 3}
PATTERNS = {"one": (1,), "three": (3,), "varying": (1, 3, 0, 2)}
PROMPT_TOKENS = sum(len(m["content"].split()) for m in QUESTION)  # how the fake counts a prompt


def tokens_in(pattern: Sequence[int], chunks: int) -> int:
    """Tokens a node with this pattern sent in its first ``chunks`` chunks."""
    return sum(itertools.islice(itertools.cycle(pattern), chunks))


def kept_tokens(pattern: Sequence[int], chunks: int) -> int:
    """The tokens a continuation keeps after a break in those ``chunks`` chunks: the words up to
    the last chunk boundary before the last word (which may have been cut inside)."""
    ends = list(itertools.accumulate(itertools.islice(itertools.cycle(pattern), chunks)))
    return max([0, *(end for end in ends if end < ends[-1])]) if ends else 0


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
            kept = kept_tokens(PATTERNS[pattern], cut)
            assert continued.max_tokens == limit - kept
            assert continued.messages[-1]["content"] == prefix(kept)  # the stable cut, resent
            # Both parts were asked for the engine's running count.
            assert servers["p1"].received[-1].continuous_usage and continued.continuous_usage
            assert_usage(seen, limit)


async def test_the_whole_answer_adds_up_over_two_breaks(make_plugin):
    limit = 20
    async with serving(nodes(p1=(3,), p2=(1, 3, 0, 2), s1=(2,))) as servers:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=2)  # 6 tokens
            # p2 goes on after word 3 (the boundary before word 6), writes 4-6 again and 6 more
            # words in 4 chunks (1, 3, 0, 2 tokens): 9 words out; s1 goes on after word 7.
            servers["p2"].set_fault("drop_midstream", after_chunks=4)
            seen = await read_stream(await ask(router, max_tokens=limit))
            assert seen.error is None and seen.served_by == ["p1", "p2", "s1"]
            assert seen.text == prefix(limit) and seen.finish_reasons == ["length"]
            assert [servers[n].received[-1].max_tokens for n in ("p2", "s1")] == [limit - 3, limit - 7]
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
            assert servers["p2"].received[-1].max_tokens == 15 - kept_tokens((1, 3, 0, 2), 4)
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


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("cut", [1, 2, 5])
async def test_the_stitched_answer_is_the_uninterrupted_one_and_counts_its_words(make_plugin, pattern, cut):
    async with serving(nodes(p1=PATTERNS[pattern], p2=(2, 0, 3))) as servers:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=cut)
            seen = await read_stream(await ask(router))
            seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
            assert seen.served_by == ["p1", "p2"]
            assert_usage(seen, DEFAULT_WORDS)  # the words written again count once
            [event] = [e for e in plugin.core.recent_events if e.event_type == "stream_resumed"]
            sent = tokens_in(PATTERNS[pattern], cut)
            kept = kept_tokens(PATTERNS[pattern], cut)
            assert {k: event.details[k] for k in TOKEN_FIELDS} == {
                "chars_sent": len(prefix(sent)),
                "chars_kept": len(prefix(kept)),
                "chars_regenerated": len(prefix(sent)) - len(prefix(kept)),
                "tokens_generated": sent,
                "tokens_source": "engine_usage",
                "tokens_kept": kept,
            }


TOKEN_FIELDS = (
    "chars_sent",
    "chars_kept",
    "chars_regenerated",
    "tokens_generated",
    "tokens_source",
    "tokens_kept",
)


async def test_a_hosted_part_says_its_count_is_an_estimate(make_plugin):
    settings = {"streams": {"inexact_continuation": "best_effort"}}
    async with serving(nodes(p1=(3,))) as servers:
        router, plugin = make_plugin(servers, settings, model="openai/fake-model")
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=2)
            seen = await read_stream(await ask(router, max_tokens=30))
            assert seen.error is None and seen.text.startswith(prefix(6))
            [event] = [e for e in plugin.core.recent_events if e.event_type == "stream_resumed"]
            estimate = litellm.token_counter(model="openai/fake-model", text=prefix(6))
            source = "chunk_count" if estimate <= 2 else "litellm_estimate"
            counted = (event.details["tokens_generated"], event.details["tokens_source"])
            assert counted == (max(2, estimate), source)
            # The best effort resends the whole text: nothing is cut back.
            assert event.details["chars_kept"] == len(prefix(6)) and event.details["chars_regenerated"] == 0
            assert event.details["exact"] is False


async def test_a_deployment_added_at_run_time_continues_with_its_engines_count(make_plugin):
    # LiteLLM adds a deployment while the Router runs (the proxy's model API): the plugin learns
    # its kind and group, so a stream continues on it exactly, with its running count asked for.
    async with serving(nodes(p1=(3,), p2=(1, 3, 0, 2))) as servers:
        router, plugin = make_plugin({"p1": servers["p1"]})
        async with plugin:
            [added] = tiered_model_list({"p2": servers["p2"]}, TIERS, api_key="fake", probe=False)
            router.add_deployment(Deployment(**added))
            servers["p1"].set_fault("drop_midstream", after_chunks=3)  # 9 tokens, kept 6
            seen = await read_stream(await ask(router, max_tokens=20))
            assert seen.error is None and seen.served_by == ["p1", "p2"]
            assert seen.text == prefix(20) and seen.finish_reasons == ["length"]
            continued = servers["p2"].received[-1]
            assert continued.max_tokens == 20 - 6 and continued.continuous_usage
            assert_usage(seen, 20)
