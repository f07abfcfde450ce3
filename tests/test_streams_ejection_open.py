"""A stream's continuation still opening on a node when that node is ejected for not answering
(issue 12): the open is cancelled at the ejection and the next deployment continues the stream,
through the real ``litellm.Router`` after ``attach()``, against fake vLLM nodes.

Three tiers, one node each: a stream starts on p1, which drops it after 5 words; its continuation
goes to p2, which at that moment starts holding every request (``hang``: it accepts and never
answers, probes included) until its failed probes eject it; p3 is the next one down.
``streams.inter_token_timeout_s`` (the open's own limit) stays at its default, 30 s.
"""

# ruff: noqa: F811 (the fixture imported from the router tests is a parameter here)
from __future__ import annotations

import asyncio
import logging
import time

import pytest
from fake_nodes import serving
from streams_support import QUESTION, AtWords, read_stream
from test_streams_ejection_router import (
    ask,
    chats,
    ejection_wall,
    events,
    make_plugin,  # noqa: F401 (a fixture)
    probed,
    state_of,
    warm_up,
)
from waiting import wait_until

from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.streams import StreamBrokenError

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "p2": 2, "p3": 3}


@pytest.fixture
async def nodes():
    # p1 paced so the break comes mid-answer; the others as fast as they can.
    made = {"p1": FakeVLLM("p1", tokens_per_s=40), "p2": FakeVLLM("p2", tokens_per_s=0)}
    made["p3"] = FakeVLLM("p3", tokens_per_s=0)
    async with serving(made) as started:
        yield started


async def ready(router, plugin) -> None:
    await probed(plugin, TIERS)
    await warm_up(router, TIERS)


def breaker(nodes, broke: list[tuple[float, float]]):
    """An ``AtWords`` action: p2 starts holding every request, p1 drops the stream at its next
    chunk; when, in ``broke`` (wall, monotonic)."""

    def break_p1_and_hang_p2() -> None:
        nodes["p2"].set_fault("hang")
        nodes["p1"].set_fault("drop_midstream", after_chunks=0)
        broke.append((time.time(), time.monotonic()))

    return break_p1_and_hang_p2


async def test_a_continuation_opening_on_a_node_that_hangs_moves_on_at_its_ejection(
    nodes, make_plugin, caplog
):
    caplog.set_level(logging.INFO, logger="litellm_failover")
    router, plugin = make_plugin(nodes, tiers=TIERS)
    async with plugin:
        await ready(router, plugin)
        before = {name: chats(node) for name, node in nodes.items()}
        broke: list[tuple[float, float]] = []  # (wall, monotonic)
        reading = asyncio.create_task(
            read_stream(await ask(router), on_chunk=AtWords(5, breaker(nodes, broke)))
        )
        # The continuation reached p2, which holds it unanswered.
        await wait_until(lambda: nodes["p2"].state()["waiting"] == 1, timeout=10, what="open held on p2")
        assert not reading.done()
        seen = await asyncio.wait_for(reading, timeout=15)  # well short of the open's own 30 s
        # p2 still hangs, yet holds nothing: the open's connection was closed, the engine let it go.
        await wait_until(lambda: nodes["p2"].state()["waiting"] == 0, timeout=5, what="p2's request closed")
        added = {name: chats(node) - before[name] for name, node in nodes.items()}
        status = plugin.status()["stream_ejection"]
        nodes["p2"].clear_fault()
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by == ["p1", "p3"]
    assert added == {"p1": 1, "p2": 1, "p3": 1}
    # p3's first chunk came within 1 s of p2's ejection (the detection), not at the open's timeout.
    broke_wall, broke_mono = broke[0]
    first_p3 = next(i for i, chunk in enumerate(seen.chunks) if chunk.system_fingerprint == "p3")
    resumed_s = seen.arrived[first_p3] - broke_mono
    detection_s = ejection_wall(plugin, "p2") - broke_wall
    assert resumed_s <= detection_s + 1.0, f"resumed after {resumed_s:.2f}s, detection {detection_s:.2f}s"
    assert detection_s < 10.0
    [resumed] = events(plugin, "stream_resumed")
    assert (resumed.details["from"], resumed.details["to"], resumed.details["resume"]) == ("p1", "p3", 2)
    assert status["opens_cut"] == 1 and status["tracked"] == 0
    # The cancelled open says why in the log (``open`` itself was cancelled and reported nothing).
    assert any(
        r.getMessage().startswith("continuing a stream on p2 was cancelled: p2 was ejected")
        for r in caplog.records
    )


@pytest.mark.parametrize("how", ["ramp_abort", "drain"])
async def test_an_ejection_not_for_not_answering_leaves_the_open_alone(nodes, make_plugin, how):
    """p2 is slow to open (not probed, so its probes cannot eject it for not answering) and is taken
    out meanwhile for another reason: a failback ramp aborted on errors, or a drain. Its open is
    not cut: the stream goes on on p2 when p2 answers."""
    router, plugin = make_plugin(nodes, tiers=TIERS, unprobed={"p2"})
    async with plugin:
        await ready(router, plugin)

        def break_p1_and_slow_p2() -> None:
            nodes["p2"].set_fault("slow", delay_s=2.0)
            nodes["p1"].set_fault("drop_midstream", after_chunks=0)

        reading = asyncio.create_task(
            read_stream(await ask(router), on_chunk=AtWords(5, break_p1_and_slow_p2))
        )
        await wait_until(lambda: nodes["p2"].state()["waiting"] == 1, timeout=10, what="open held on p2")
        if how == "drain":
            plugin.drain("p2")
        else:
            assert plugin.core.eject("p2", "failback ramp aborted on errors", source="ramp")
            assert state_of(plugin, "p2") == "unhealthy"
        seen = await asyncio.wait_for(reading, timeout=15)
        status = plugin.status()["stream_ejection"]
    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
    assert seen.served_by == ["p1", "p2"]
    assert status["opens_cut"] == 0 and status["tracked"] == 0
    assert chats(nodes["p3"]) == 1  # its warm-up only


async def test_an_open_that_is_the_last_continuation_is_left_to_its_own_timeout(nodes, make_plugin):
    """``streams.max_resumes: 1``, and p2's open is that one: cancelling it could not continue the
    stream, only turn an open that may still answer (a falsely ejected slow node) into an error
    sooner, so it waits out its own limit (``streams.inter_token_timeout_s``), like a running stream
    in the same case."""
    router, plugin = make_plugin(nodes, {"max_resumes": 1, "inter_token_timeout_s": 4.0}, tiers=TIERS)
    async with plugin:
        await ready(router, plugin)
        broke: list[tuple[float, float]] = []
        reading = asyncio.create_task(
            read_stream(await ask(router), on_chunk=AtWords(5, breaker(nodes, broke)))
        )
        await wait_until(lambda: state_of(plugin, "p2") == "unhealthy", timeout=10, what="p2 ejected")
        seen = await asyncio.wait_for(reading, timeout=15)
        ended_at = time.monotonic()
        status = plugin.status()["stream_ejection"]
        nodes["p2"].clear_fault()
    assert isinstance(seen.error, StreamBrokenError) and "streams.max_resumes" in str(seen.error)
    assert ended_at - broke[0][1] >= 4.0  # the open's own limit, not the ejection
    assert status["opens_cut"] == 0 and status["kept"]["max_resumes"] == 1 and status["tracked"] == 0
    assert chats(nodes["p3"]) == 1  # its warm-up only
