"""Streams of several choices (``n`` > 1) through the resuming stream: never continued after a
break (``StreamRequest.not_resumable``), but passed through whole, every choice's chunks, and a
break after choice 0 has finished is still a break, not a quiet end with the others cut short.

Hand-made upstreams show what the resuming stream itself does with every chunk; the fake vLLM
through the real ``litellm.Router`` shows it end to end (one choice a chunk, each choice's finish
reason when it ends, as vLLM streams them).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import litellm
from aiohttp import web
from fake_nodes import serving, tiered_model_list
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices, Usage
from streams_support import read_stream

from litellm_failover import attach
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.streams import StreamBrokenError
from litellm_failover.streams.request import StreamRequest
from litellm_failover.streams.resume import ResumingStream

QUESTION = [{"role": "user", "content": "two takes"}]
WORDS = 3  # per choice


def chunk(index: int, finish: str | None = None, **delta) -> ModelResponseStream:
    choice = StreamingChoices(index=index, delta=Delta(**delta), finish_reason=finish)
    return ModelResponseStream(id="c1", created=7, model="m", choices=[choice])


def vllm_chunks() -> list[ModelResponseStream]:
    """Two choices as vLLM streams them: each choice's opening, text, finish; then the usage."""
    return [
        chunk(0, role="assistant", content=""),
        chunk(1, role="assistant", content=""),
        chunk(0, content="The Rhine"),
        chunk(1, content="The Nile"),
        chunk(0, finish="stop"),
        chunk(1, content=" river"),
        chunk(1, finish="stop"),
        ModelResponseStream(id="c1", created=7, model="m", choices=[], usage=Usage(prompt_tokens=2)),
    ]


class Upstream:
    """Hands over ``chunks``, then raises ``then`` (None: ends)."""

    def __init__(self, chunks: list[ModelResponseStream], then: Exception | None = None) -> None:
        self.chunks = iter(chunks)
        self.then = then

    def __aiter__(self) -> Upstream:
        return self

    async def __anext__(self) -> ModelResponseStream:
        for item in self.chunks:
            return item
        if self.then is not None:
            raise self.then
        raise StopAsyncIteration

    async def aclose(self) -> None:
        pass


async def total_usage(parts) -> Usage:
    return Usage(prompt_tokens=2, completion_tokens=0, total_tokens=2)


def resuming(upstream: Upstream) -> ResumingStream:
    """A resuming stream of an ``n``=2 request over ``upstream``, with just enough of a resumer."""
    resumer = SimpleNamespace(
        total_usage=total_usage,
        settings=SimpleNamespace(inter_token_timeout_s=5.0),
        answer_wanted=lambda stream: False,
        chaos_cut=lambda iterator, deployment: iterator,
        report_break=lambda part, broke: None,
        broken=lambda stream, broke, part, partial, why: f"broke: {why}",
    )
    request = StreamRequest.from_kwargs("chat", QUESTION, {"n": 2, "stream_options": {"include_usage": True}})
    return ResumingStream(resumer, upstream, request, deployment="p1")


def shape(chunks) -> list[tuple]:
    return [
        (c.choices[0].index, c.choices[0].delta.role, c.choices[0].delta.content, c.choices[0].finish_reason)
        if c.choices
        else ("usage",)
        for c in chunks
    ]


async def test_every_choices_chunks_pass_through_in_order():
    """Choice 1's opening is its own, not a continuation's repeat of choice 0's: it passes."""
    sent = vllm_chunks()
    seen = await read_stream(resuming(Upstream(sent)))
    assert seen.error is None
    assert shape(seen.chunks) == shape(vllm_chunks())


async def test_a_break_after_choice_0_finished_is_a_break_for_the_others():
    """Choice 0 has its finish reason, choice 1 is cut mid-answer: an error, not a quiet end."""
    cut = vllm_chunks()[:6]  # choice 1 has "The Nile river", and no finish reason
    seen = await read_stream(resuming(Upstream(cut, then=ConnectionResetError("reset by peer"))))
    assert isinstance(seen.error, StreamBrokenError)
    assert "n=2 streams several answers at once" in str(seen.error)
    assert shape(seen.chunks) == shape(cut)
    # Every choice finished: a break after it lost at most the usage chunk, which is made up.
    whole = vllm_chunks()[:7]
    seen = await read_stream(resuming(Upstream(whole, then=ConnectionResetError("reset by peer"))))
    assert seen.error is None and shape(seen.chunks) == [*shape(whole), ("usage",)]


class StallingVLLM(FakeVLLM):
    """Under ``drop_midstream`` it stops sending where the fake vLLM aborts, the connection open:
    a node hung mid-answer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = asyncio.Event()

    async def _dropped(self, request: web.Request, sent: int) -> bool:
        fault = self.fault
        if fault is not None and fault.mode == "drop_midstream" and sent >= fault.params["after_chunks"]:
            await self.release.wait()  # released when the test ends
            return True
        return False


async def test_through_the_router_every_chunk_passes_and_a_stall_after_choice_0_is_a_break(tmp_path):
    nodes = {"p1": StallingVLLM("p1", tokens_per_s=0, words=WORDS), "p2": FakeVLLM("p2", tokens_per_s=0)}
    async with serving(nodes):
        model_list = tiered_model_list(nodes, {"p1": 1, "p2": 2}, api_key="fake", probe=False)
        router = litellm.Router(model_list=model_list, num_retries=0)

        async def ask():
            return await router.acompletion(model="chat", messages=QUESTION, n=2, stream=True)

        plain = await read_stream(await ask())  # LiteLLM's own stream, before the plugin
        database = f"sqlite+aiosqlite:///{tmp_path}/events.db"
        plugin = attach(router, {"database_url": database, "streams": {"inter_token_timeout_s": 0.5}})
        try:
            async with plugin:
                seen = await read_stream(await ask())
                # Choice 0 ends (its last word, its finish reason), then p1 hangs before choice
                # 1's last word: 2 * WORDS content chunks, the last not sent.
                nodes["p1"].set_fault("drop_midstream", after_chunks=2 * WORDS - 1)
                stalled = await asyncio.wait_for(read_stream(await ask()), timeout=10)
                nodes["p1"].release.set()
        finally:
            plugin.detach()
    assert plain.error is None and seen.error is None
    assert shape(seen.chunks) == shape(plain.chunks)
    assert len({c.id for c in seen.chunks}) == 1
    assert isinstance(stalled.error, StreamBrokenError), stalled.error
    assert "inter_token_timeout_s" in str(stalled.error) and "n=2" in str(stalled.error)
    finishes = [
        c.choices[0].finish_reason for c in stalled.chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]  # choice 0's, before the stall
