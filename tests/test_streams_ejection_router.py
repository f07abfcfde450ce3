"""A stream mid-answer on a node that is ejected for not answering (issue 12 §1), through the real
``litellm.Router`` after ``attach()``, against fake vLLM nodes.

p1 serves first and p2 is its standby; both are probed. ``streams.inter_token_timeout_s`` stays at
its default (30 s): a stream that waited it out on p1 would take 30 s. The rule under test
(``litellm_failover.streams.ejection``): at the ejection, a stream silent for X
(``health.max_probe_latency_s``, 1 s here) is cut and continued on p2 at once; one still
streaming keeps going, with X as its inter-token limit from then on.
"""

from __future__ import annotations

import asyncio
import gc
import time

import litellm
import pytest
from fake_nodes import serving, tiered_model_list
from streams_support import QUESTION, AtWords, Frozen, read_stream
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.streams import StreamBrokenError

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2}
PROBE_LIMIT_S = 1.0  # X
FAST_HEALTH = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": PROBE_LIMIT_S}
OWN_TIMEOUT_S = 60.0  # LiteLLM's own stream timeout: far beyond anything a test waits


def attach_tiered(nodes, tiers, tmp_path, *, streams=None, health=FAST_HEALTH, unprobed=()):
    """A Router over ``nodes`` by ``tiers`` with the plugin attached (not started); the nodes in
    ``unprobed`` are not probed (traffic alone decides their health)."""
    model_list = tiered_model_list(nodes, tiers, api_key="fake", timeout_s=OWN_TIMEOUT_S)
    for deployment in model_list:
        if deployment["model_info"]["id"] in unprobed:
            deployment["model_info"]["failover"] = {"probe": False}
    router = litellm.Router(model_list=model_list, num_retries=2, retry_after=0)
    settings = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db", "health": health}
    if streams is not None:
        settings["streams"] = streams
    return router, attach(router, settings)


@pytest.fixture
def make_plugin(tmp_path):
    made = []

    def make(nodes, streams=None, health=FAST_HEALTH, *, tiers=TIERS, unprobed=()):
        router, plugin = attach_tiered(
            nodes, tiers, tmp_path, streams=streams, health=health, unprobed=unprobed
        )
        made.append(plugin)
        return router, plugin

    yield make
    for plugin in made:
        plugin.detach()


@pytest.fixture
async def hung_p1():
    """p1 a real process (SIGSTOP freezes its streams and its probes alike), p2 in-process."""
    p1 = FakeVLLMProcess("p1", tokens_per_s=40)
    p1.start()
    try:
        async with serving({"p2": FakeVLLM("p2", tokens_per_s=0)}) as started:
            yield {"p1": p1, **started}
    finally:
        p1.stop()


def events(plugin, event_type: str) -> list:
    return [e for e in plugin.core.recent_events if e.event_type == event_type]


def state_of(plugin, deployment_id: str) -> str:
    return plugin.core.health[deployment_id].state.value


def chats(server) -> int:
    return server.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)


async def ask(router):
    return await router.acompletion(
        model="chat", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )


async def probed(plugin, tiers=TIERS) -> None:
    await wait_until(lambda: plugin.prober.rounds >= 2, timeout=10, what="probes ran")
    await wait_until(
        lambda: {state_of(plugin, d) for d in tiers} == {"healthy"}, timeout=10, what="all healthy"
    )


async def warm_up(router, tiers=TIERS) -> None:
    """A stream from each node first: LiteLLM builds its client for a deployment on the first call
    to it, which on a busy machine can take longer than the resume itself."""
    for deployment_id in tiers:
        async for _ in await router.acompletion(model=deployment_id, messages=QUESTION, stream=True):
            pass


def ejection_wall(plugin, deployment_id: str) -> float:
    """When the plugin ejected it (the event's own time: a poll could be held up by the loop)."""
    [event] = [
        e
        for e in events(plugin, "state_change")
        if e.deployment_id == deployment_id and e.details["to_state"] == "unhealthy"
    ]
    return event.created_at.timestamp()


async def ejected(plugin, deployment_id: str, within_s: float) -> float:
    """When the plugin ejected it (polled, so at most one poll late)."""
    await wait_until(lambda: state_of(plugin, deployment_id) == "unhealthy", timeout=within_s, what="eject")
    return time.monotonic()


@pytest.mark.parametrize("health", [FAST_HEALTH, {}], ids=["fast_probes", "default_settings"])
async def test_a_stream_mid_answer_on_a_hung_node_resumes_within_detection_plus_1s(
    hung_p1, make_plugin, health
):
    router, plugin = make_plugin(hung_p1, health=health)
    assert plugin.settings.streams.inter_token_timeout_s == 30.0  # the default, untouched
    async with plugin:
        await probed(plugin)
        await warm_up(router)
        before = {name: chats(node) for name, node in hung_p1.items()}
        with Frozen(hung_p1["p1"].pid) as freeze:
            frozen: list[tuple[float, float]] = []  # (wall, monotonic)

            def hang() -> None:
                freeze()
                frozen.append((time.time(), time.monotonic()))

            stream = await ask(router)
            reading = asyncio.create_task(read_stream(stream, on_chunk=AtWords(5, hang)))
            await wait_until(lambda: bool(frozen), timeout=10, what="p1 frozen mid-answer")
            await ejected(plugin, "p1", within_s=10)
            seen = await asyncio.wait_for(reading, timeout=10)
        # After SIGCONT: the frozen node answers again.
        added = {name: chats(node) - before[name] for name, node in hung_p1.items()}
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by == ["p1", "p2"]
    # The first chunk after the freeze is p2's continuation: it came within 1 s of the ejection.
    frozen_wall, frozen_mono = frozen[0]
    resumed_s = next(at for at in seen.arrived if at > frozen_mono) - frozen_mono
    detection_s = ejection_wall(plugin, "p1") - frozen_wall
    assert resumed_s <= detection_s + 1.0, f"resumed after {resumed_s:.2f}s, detection {detection_s:.2f}s"
    assert detection_s < 10.0  # and nowhere near the 30 s inter-token timeout
    [resumed] = events(plugin, "stream_resumed")
    assert "p1 was ejected" in resumed.details["cause"] and resumed.details["to"] == "p2"
    assert "inter_token_timeout_s" not in resumed.details["cause"]
    status = plugin.status()["stream_ejection"]
    assert (status["cut"], status["limited"], status["tracked"]) == (1, 0, 0)
    assert added == {"p1": 1, "p2": 1}  # one continuation, not a repeat


async def test_a_falsely_ejected_slow_node_keeps_its_streaming_answers(make_plugin):
    """p1's probes time out (the ``slow`` fault holds every new request, probes included, 3 s),
    yet the stream it already serves goes on: it is not cut, and no engine sees a copy of it."""
    nodes = {"p1": FakeVLLM("p1", words=100, tokens_per_s=20), "p2": FakeVLLM("p2", tokens_per_s=0)}
    async with serving(nodes):
        router, plugin = make_plugin(nodes)
        async with plugin:
            await probed(plugin)
            # LiteLLM 1.110's first success log holds the event loop for seconds (measured 2-3 s on
            # this machine), which would stop the in-process p1 too: paid here, before the stream.
            await warm_up(router)
            before = {name: chats(node) for name, node in nodes.items()}
            stream = await ask(router)
            slow = AtWords(5, lambda: nodes["p1"].set_fault("slow", delay_s=3.0))
            reading = asyncio.create_task(read_stream(stream, on_chunk=slow))
            await ejected(plugin, "p1", within_s=10)
            assert not reading.done()  # the ejection came while p1 was still streaming
            seen = await asyncio.wait_for(reading, timeout=20)
            status = plugin.status()["stream_ejection"]
        assert seen.error is None and seen.text == expected_answer(QUESTION, 100)
        assert seen.served_by == ["p1"]
        assert events(plugin, "stream_resumed") == []
        assert (status["cut"], status["limited"], status["cut_after_limit"]) == (0, 1, 0)
        assert {name: chats(node) - before[name] for name, node in nodes.items()} == {"p1": 1, "p2": 0}


async def test_a_stream_limited_at_the_ejection_is_cut_when_it_goes_silent_after(make_plugin):
    """p1 is ejected while its stream still flows (probes held by ``slow``), then freezes: the
    stream is continued X after its last chunk, not 30 s after."""
    p1 = FakeVLLMProcess("p1", words=200, tokens_per_s=20)
    p1.start()
    try:
        async with serving({"p2": FakeVLLM("p2", words=200, tokens_per_s=0)}) as started:
            nodes = {"p1": p1, **started}
            router, plugin = make_plugin(nodes)
            async with plugin:
                await probed(plugin)
                await warm_up(router)
                stream = await ask(router)
                slow = AtWords(5, lambda: p1.set_fault("slow", delay_s=5.0))
                with Frozen(p1.pid) as freeze:
                    reading = asyncio.create_task(read_stream(stream, on_chunk=slow))
                    await ejected(plugin, "p1", within_s=10)
                    await wait_until(lambda: plugin.status()["stream_ejection"]["limited"] == 1, timeout=2)
                    freeze()
                    frozen_at = time.monotonic()
                    seen = await asyncio.wait_for(reading, timeout=10)
                status = plugin.status()["stream_ejection"]
    finally:
        p1.stop()
    seen.assert_one_unbroken_answer(expected_answer(QUESTION, 200), words=200)
    assert seen.served_by == ["p1", "p2"]
    resumed_at = next(at for at in seen.arrived if at > frozen_at)
    assert resumed_at - frozen_at < PROBE_LIMIT_S + 1.0
    [resumed] = events(plugin, "stream_resumed")
    assert "p1 was ejected" in resumed.details["cause"] and "max_probe_latency_s" in resumed.details["cause"]
    assert (status["cut"], status["limited"], status["cut_after_limit"]) == (0, 1, 1)


@pytest.mark.parametrize(
    ("streams", "kept"),
    [({"resume": False}, None), ({"max_resumes": 0}, "max_resumes")],
    ids=["resume_off", "no_resume_left"],
)
async def test_a_stream_that_could_not_be_continued_is_left_to_its_own_timeout(
    hung_p1, make_plugin, streams, kept
):
    """Cutting it would only turn a stream that may still finish into an error: nothing changes,
    and it breaks, with an error, at its own inter-token timeout."""
    router, plugin = make_plugin(hung_p1, {"inter_token_timeout_s": 4.0, **streams})
    async with plugin:
        await probed(plugin)
        with Frozen(hung_p1["p1"].pid) as freeze:
            frozen: list[float] = []

            def hang() -> None:
                freeze()
                frozen.append(time.monotonic())

            reading = asyncio.create_task(read_stream(await ask(router), on_chunk=AtWords(5, hang)))
            await wait_until(lambda: bool(frozen), timeout=10, what="p1 frozen mid-answer")
            await ejected(plugin, "p1", within_s=10)
            seen = await asyncio.wait_for(reading, timeout=15)
            ended_at = time.monotonic()
        status = plugin.status()["stream_ejection"]
    assert isinstance(seen.error, StreamBrokenError)
    assert "inter_token_timeout_s" in str(seen.error)
    assert ended_at - frozen[0] >= 4.0  # its own timeout, not the ejection
    assert (status["cut"], status["limited"]) == (0, 0)
    expected_kept = {"max_resumes": 0, "not_resumable": 0, "no_alternative": 0}
    if kept is not None:
        expected_kept[kept] = 1
    assert status["kept"] == expected_kept
    assert status["tracked"] == 0


@pytest.mark.parametrize("leave", ["aclose", "drop"])
async def test_a_client_that_leaves_mid_stream_leaves_nothing_registered(make_plugin, leave):
    """The registry of running parts empties whether the client closes the stream or just drops
    it (the event loop's async-generator finaliser closes it then)."""
    nodes = {"p1": FakeVLLM("p1", words=200, tokens_per_s=50), "p2": FakeVLLM("p2", tokens_per_s=0)}
    async with serving(nodes):
        router, plugin = make_plugin(nodes)
        async with plugin:
            await probed(plugin)
            streams = [await ask(router) for _ in range(3)]
            for stream in streams:
                for _ in range(3):
                    await stream.__anext__()
            live = plugin.stream_ejections.live
            assert len(live) == 3 and {part.deployment for part in live.on("p1")} == {"p1"}
            if leave == "aclose":
                for stream in streams:
                    await stream.aclose()
            else:
                del stream  # the loop's name for the last one
                streams.clear()
                gc.collect()
            await wait_until(lambda: len(live) == 0, timeout=5, what="every part removed")
            assert live.on("p1") == [] and plugin.status()["stream_ejection"]["tracked"] == 0
            # The engine saw the clients go: nothing keeps generating for nobody.
            await wait_until(lambda: nodes["p1"].state()["running"] == 0, timeout=5, what="p1 idle")
