"""Mid-stream failover through the real ``litellm.Router`` after ``attach()``, against fake vLLMs.

Three tiers, one node each (p1, then p2, then s1), so the node a stream starts on and the node it
continues on are known: p1 first, and a break moves it down the tiers. Every test reads the
stream as a client would and checks it against the uninterrupted answer, word for word.
"""

from __future__ import annotations

import statistics

import litellm
import pytest
from fake_nodes import serving, tiered_model_list
from streams_support import QUESTION, AtWords, ClosingVLLM, Frozen, prefix, read_stream
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.conversations import load_messages
from litellm_failover.store.queries import list_events
from litellm_failover.streams import StreamBrokenError

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2, "s1": 3}


def model_list(servers: dict[str, object], *, model: str = "hosted_vllm/fake-model") -> list[dict]:
    return tiered_model_list(servers, TIERS, model=model, api_key="fake", probe=False)


@pytest.fixture
async def servers():
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in TIERS}) as started:
        yield started


@pytest.fixture
def make_plugin(tmp_path):
    made = []

    def make(servers, settings=None, **list_options):
        router = litellm.Router(model_list=model_list(servers, **list_options), num_retries=2, retry_after=0)
        merged = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"}
        merged.update(settings or {})
        plugin = attach(router, merged)
        made.append(plugin)
        return router, plugin

    yield make
    for plugin in made:
        plugin.detach()


def events(plugin, event_type: str) -> list:
    return [e for e in plugin.core.recent_events if e.event_type == event_type]


async def ask(router, **extra):
    extra.setdefault("stream_options", {"include_usage": True})
    return await router.acompletion(model="chat", messages=QUESTION, stream=True, **extra)


# -- one break ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after", [1, 12, DEFAULT_WORDS - 1, DEFAULT_WORDS], ids=["first", "middle", "last", "end"]
)
async def test_a_stream_cut_after_its_first_chunks_continues_word_for_word(servers, make_plugin, after):
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=after)
        seen = await read_stream(await ask(router))
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        assert seen.served_by == (["p1", "p2"] if after < DEFAULT_WORDS else ["p1"])
        # p2 was asked to continue the text the client already had, from a stable cut: the last
        # word may have been cut inside, so p2 writes it again and the plugin skips it. With
        # nothing before that word (one word sent) the request goes again from the top.
        continued = servers["p2"].received[-1]
        kept = prefix(after - 1)
        assert continued.continue_final_message is bool(kept)
        resent = [{"role": "assistant", "content": kept}] if kept else []
        assert continued.messages == [*QUESTION, *resent]
        [resumed] = events(plugin, "stream_resumed")
        assert (resumed.from_deployment, resumed.to_deployment) == ("p1", "p2")
        details = resumed.details
        assert details["chars_sent"] == len(prefix(after)) and details["exact"] is True
        assert details["chars_kept"] == len(kept) and details["tokens_kept"] == after - 1
        assert details["kind"] == "vllm" and details["resume"] == 1 and details["gap_ms"] >= 0
        # The cut is p1's outcome, counted toward its ejection.
        assert plugin.core.health["p1"].outlier.consecutive_errors == 1
        assert plugin.core.health["p2"].outlier.consecutive_errors == 0


async def test_a_cut_before_any_text_is_answered_whole_by_the_next_node(servers, make_plugin):
    # Dropped right after the opening role chunk: LiteLLM's own pre-content fallback or the
    # plugin takes over; either way the client sees one stream with one id, not two openings.
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=0)
        seen = await read_stream(await ask(router))
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        assert seen.served_by == ["p2"]
        roles = [c for c in seen.chunks if c.choices and c.choices[0].delta.role]
        assert len(roles) == 1


async def test_two_nodes_dropping_in_one_stream(servers, make_plugin):
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=5)
        # p2 goes on after word 4, writes word 5 again and 6 more: the client has 11 words.
        servers["p2"].set_fault("drop_midstream", after_chunks=7)
        seen = await read_stream(await ask(router))
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        assert seen.served_by == ["p1", "p2", "s1"]
        first, second = events(plugin, "stream_resumed")
        assert (first.from_deployment, first.to_deployment) == ("p1", "p2")
        assert (second.from_deployment, second.to_deployment) == ("p2", "s1")
        assert (first.details["chars_sent"], second.details["chars_sent"]) == (
            len(prefix(5)),
            len(prefix(11)),
        )
        assert second.details["resume"] == 2
        assert servers["s1"].received[-1].messages[-1] == {"role": "assistant", "content": prefix(10)}
        await plugin.writer.flush(timeout=5)
        stored = await list_events(plugin.settings.database_url, event_type="stream_resumed")
        assert [(e["from_deployment"], e["to_deployment"]) for e in stored] == [("p1", "p2"), ("p2", "s1")]
        assert all(e["details"]["gap_ms"] >= 0 for e in stored)


async def test_without_usage_requested_no_usage_chunk_is_made_up(servers, make_plugin):
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=3)
        seen = await read_stream(await router.acompletion(model="chat", messages=QUESTION, stream=True))
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS, usage=False)


async def test_max_tokens_counts_what_was_already_sent(servers, make_plugin):
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=4)
        seen = await read_stream(await ask(router, max_tokens=10))
        assert seen.error is None and seen.text == prefix(10)
        # p2 goes on after word 3 (it writes word 4 again): 10 less the 3 words kept.
        assert seen.finish_reasons == ["length"] and servers["p2"].received[-1].max_tokens == 7
        assert seen.usages[0].completion_tokens == 10
        # Cut exactly at the limit: the answer is complete, nothing is asked of another node.
        servers["p1"].set_fault("drop_midstream", after_chunks=5)
        asked_p2 = len(servers["p2"].received)
        seen = await read_stream(await ask(router, max_tokens=5))
        assert seen.error is None and seen.text == prefix(5) and seen.finish_reasons == ["length"]
        assert len(seen.usages) == 1 and seen.usages[0].completion_tokens == 5
        assert len(servers["p2"].received) == asked_p2


# -- breaks that are not exceptions ---------------------------------------------------------


async def test_a_clean_close_without_finish_reason_is_a_break_not_an_answer(make_plugin):
    servers = {"p1": ClosingVLLM("p1", tokens_per_s=0), "p2": FakeVLLM("p2", tokens_per_s=0)}
    for server in servers.values():
        await server.start()
    try:
        router, plugin = make_plugin(servers)
        async with plugin:
            servers["p1"].set_fault("drop_midstream", after_chunks=9)
            seen = await read_stream(await ask(router))
            seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
            assert seen.served_by == ["p1", "p2"]
            [resumed] = events(plugin, "stream_resumed")
            # The plugin's own words; LiteLLM 1.110 notices the missing finish reason itself and
            # raises "Stream ended before a finish_reason was received", which the plugin resumes.
            cause = resumed.details["cause"]
            assert "without a finish reason" in cause or "before a finish_reason" in cause
    finally:
        for server in servers.values():
            await server.stop()


async def test_a_node_that_stops_sending_is_left_after_the_inter_token_timeout(make_plugin):
    # A real process, frozen mid-answer with SIGSTOP: its socket stays open and nothing comes.
    frozen_node = FakeVLLMProcess("p1", tokens_per_s=40)
    frozen_node.start()
    servers = {"p1": frozen_node, "p2": FakeVLLM("p2", tokens_per_s=0)}
    await servers["p2"].start()
    try:
        router, plugin = make_plugin(servers, {"streams": {"inter_token_timeout_s": 0.4}})
        async with plugin:
            with Frozen(frozen_node.pid) as freeze:
                seen = await read_stream(await ask(router), on_chunk=AtWords(5, freeze))
                assert freeze.frozen
            seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
            assert seen.served_by == ["p1", "p2"]
            [resumed] = events(plugin, "stream_resumed")
            assert "inter_token_timeout_s" in resumed.details["cause"]
            # The client's silence is the timeout plus the resume; the resume itself is quick.
            assert 400 <= resumed.details["gap_ms"] < 3000 and resumed.details["resume_ms"] < 1000
            gaps = [b - a for a, b in zip(seen.arrived, seen.arrived[1:], strict=False)]
            assert max(gaps) >= 0.4  # the client waited out the timeout once, then the rest came
    finally:
        frozen_node.stop()
        await servers["p2"].stop()


# -- when nothing can continue: an error, never a quiet end ---------------------------------


async def test_no_node_left_ends_the_stream_with_an_error(servers, make_plugin):
    router, plugin = make_plugin(servers)
    async with plugin:
        for name, after in (("p1", 4), ("p2", 4), ("s1", 4)):
            servers[name].set_fault("drop_midstream", after_chunks=after)
        seen = await read_stream(await ask(router))
        assert isinstance(seen.error, StreamBrokenError)
        assert "could not be continued" in str(seen.error) and "streams.max_resumes" in str(seen.error)
        # Three nodes, four chunks each, the two continuations writing a word again (skipped):
        # 4 + 3 + 3 words, nothing repeated, nothing lost.
        assert seen.text == prefix(10)
        assert seen.finish_reasons == [] and seen.usages == []
        [broken] = events(plugin, "stream_broken")
        assert broken.deployment_id == "s1" and broken.details["chars_sent"] == len(prefix(10))


async def test_max_resumes_caps_the_continuations(servers, make_plugin):
    router, plugin = make_plugin(servers, {"streams": {"max_resumes": 1}})
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=4)
        servers["p2"].set_fault("drop_midstream", after_chunks=4)
        seen = await read_stream(await ask(router))
        # p2 wrote word 4 again (skipped), then three more.
        assert isinstance(seen.error, StreamBrokenError) and seen.text == prefix(7)
        assert "1 continuation(s) already used" in str(seen.error)
        assert len(servers["s1"].received) == 0  # s1 was there, but one continuation was the limit


async def test_a_group_with_no_node_left_is_an_error(servers, make_plugin):
    router, plugin = make_plugin(servers, {"streams": {"max_resumes": 5}})
    async with plugin:
        for server in servers.values():
            server.set_fault("drop_midstream", after_chunks=4)
        seen = await read_stream(await ask(router))
        assert isinstance(seen.error, StreamBrokenError) and seen.text == prefix(10)  # 4 + 3 + 3
        assert "no other healthy deployment in group 'chat'" in str(seen.error)


async def test_a_continuation_that_fails_to_start_moves_on(servers, make_plugin):
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=4)
        servers["p2"].set_fault("http_500")
        seen = await read_stream(await ask(router))
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        assert seen.served_by == ["p1", "s1"]
        [resumed] = events(plugin, "stream_resumed")
        assert (resumed.from_deployment, resumed.to_deployment, resumed.details["resume"]) == ("p1", "s1", 2)
        assert plugin.core.health["p2"].outlier.consecutive_errors == 1  # its failure counted, once


async def test_resume_off_turns_a_break_into_an_error(servers, make_plugin):
    router, plugin = make_plugin(servers, {"streams": {"resume": False}})
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=6)
        seen = await read_stream(await ask(router))
        assert isinstance(seen.error, StreamBrokenError) and "streams.resume: false" in str(seen.error)
        assert seen.text == prefix(6) and len(servers["p2"].received) == 0


# -- hosted kinds: no exact continuation ----------------------------------------------------


async def test_an_inexact_kind_ends_with_an_error_by_default(servers, make_plugin):
    router, plugin = make_plugin(servers, model="openai/fake-model")  # inferred: openai-compatible
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=5)
        seen = await read_stream(await ask(router))
        assert isinstance(seen.error, StreamBrokenError)
        assert "inexact_continuation" in str(seen.error) and "openai-compatible" in str(seen.error)
        assert seen.text == prefix(5) and len(servers["p2"].received) == 0


async def test_an_inexact_kind_gets_a_best_effort_when_allowed(servers, make_plugin):
    settings = {"streams": {"inexact_continuation": "best_effort"}}
    router, plugin = make_plugin(servers, settings, model="openai/fake-model")
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=5)
        seen = await read_stream(await ask(router))
        assert seen.error is None and seen.text.startswith(prefix(5)) and len(seen.text) > len(prefix(5))
        assert len(seen.ids) == 1 and seen.finish_reasons == ["stop"] and len(seen.usages) == 1
        asked = servers["p2"].received[-1]
        assert asked.messages[-2] == {"role": "assistant", "content": prefix(5)}
        assert asked.messages[-1]["role"] == "user" and not asked.continue_final_message
        [resumed] = events(plugin, "stream_resumed")
        assert resumed.details["exact"] is False and resumed.details["kind"] == "openai-compatible"


# -- what the plugin learns -----------------------------------------------------------------


async def test_cut_streams_eject_the_node_while_clients_see_none(servers, make_plugin, monkeypatch):
    router, plugin = make_plugin(servers)
    reports = []  # every report of a failed p1 attempt: the plugin's own and LiteLLM's failure log
    original = plugin.attempt_failed

    def counted(deployment_id, *args):
        reports.append(deployment_id)
        original(deployment_id, *args)

    monkeypatch.setattr(plugin, "attempt_failed", counted)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=3)
        for index in range(plugin.settings.outlier.consecutive_errors):
            seen = await read_stream(await ask(router))
            seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
            if index == 0:
                # Reported twice (here and by LiteLLM's failure log), counted once.
                await wait_until(lambda: reports.count("p1") >= 2, what="LiteLLM's failure log for p1")
                assert plugin.core.health["p1"].outlier.consecutive_errors == 1
        await wait_until(lambda: plugin.core.health["p1"].state.value == "unhealthy", what="p1 ejected")
        assert "stream_cut" in plugin.core.health["p1"].reason
        seen = await read_stream(await ask(router))
        assert seen.error is None and seen.served_by == ["p2"]  # straight to p2 now


async def test_a_resumed_stream_is_stored_once_and_whole_in_its_session(servers, make_plugin):
    router, plugin = make_plugin(servers)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=8)
        stream = await ask(router, metadata={"session_id": "resumed"})
        seen = await read_stream(stream)
        seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, what="turn recorded")
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(plugin.settings.database_url, "resumed")
        assert [(m.role, m.content) for m in stored] == [
            ("user", QUESTION[0]["content"]),
            ("assistant", ANSWER),
        ]
        assert stored[1].deployment_id == "p2"


async def test_the_gap_a_client_sees_at_a_break(servers, make_plugin):
    """Measured, warm: the time from the break to the continuation's first chunk (median and max
    over 20 resumed streams; the figure the README quotes)."""
    router, plugin = make_plugin(servers, {"outlier": {"consecutive_errors": 1000}})  # p1 stays first
    async with plugin:
        for name in ("p1", "p2"):  # warm LiteLLM's clients for both nodes
            await read_stream(await router.acompletion(model=name, messages=QUESTION, stream=True))
        servers["p1"].set_fault("drop_midstream", after_chunks=12)
        for _ in range(20):
            seen = await read_stream(await ask(router))
            seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
        gaps = [e.details["gap_ms"] for e in events(plugin, "stream_resumed")]
        assert len(gaps) == 20
        median, worst = statistics.median(gaps), max(gaps)
        print(f"\nstream resume gap (Router, warm, 20 breaks): median {median:.1f} ms, max {worst:.1f} ms")
        assert median < 250
