"""The stall watch's two outside actions an ejection uses (``cut`` and ``tighten``), and the
registry of running parts, on their own: the Router and proxy tests show them end to end."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import pytest
from test_streams import paced  # chunks at a given pace, then silence
from waiting import wait_until

from litellm_failover.streams.ejection import LiveStreams
from litellm_failover.streams.request import StreamRequest
from litellm_failover.streams.resume import Part, ResumingStream
from litellm_failover.streams.stall import Stalled, StallWatch


@pytest.mark.parametrize("limit_s", [30.0, None], ids=["with_timeout", "no_timeout"])
async def test_cut_breaks_the_current_wait_at_once_with_its_cause(limit_s):
    watch = StallWatch(limit_s)
    stalling = asyncio.Event()
    iterator = paced([0.0], stall=asyncio.Event(), stalling=stalling).__aiter__()
    assert await watch.next(iterator) == 0
    assert watch.silent_s() is None  # between waits: nothing to cut
    assert not watch.cut("between waits")
    waiting = asyncio.ensure_future(watch.next(iterator))
    await asyncio.wait_for(stalling.wait(), 5)
    silent = watch.silent_s()
    assert silent is not None and 0 <= silent < 5
    started = time.monotonic()
    assert watch.cut("p1 was ejected")
    with pytest.raises(Stalled) as info:
        await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 0.5
    assert info.value.cause == "p1 was ejected"
    assert asyncio.current_task().cancelling() == 0
    watch.close()


async def test_cut_cancels_a_waited_awaitable_a_continuations_open():
    """``wait`` is how a continuation's open is watched (no limit of its own): a cut cancels the
    open itself, so its connection closes, and the wait raises ``Stalled`` with the cause."""
    watch = StallWatch(None)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def opening() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a node that accepted and never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.ensure_future(watch.wait(opening()))
    await asyncio.wait_for(started.wait(), 5)
    assert watch.cut("p2 was ejected")
    with pytest.raises(Stalled) as info:
        await asyncio.wait_for(waiting, 5)
    assert info.value.cause == "p2 was ejected" and cancelled.is_set()
    assert watch.silent_s() is None


async def test_tighten_counts_the_current_wait_from_its_start_and_fires_once():
    watch = StallWatch(30.0)
    stalling = asyncio.Event()
    iterator = paced([], stall=asyncio.Event(), stalling=stalling).__aiter__()
    fired: list[bool] = []
    started = time.monotonic()
    waiting = asyncio.ensure_future(watch.next(iterator))
    await asyncio.wait_for(stalling.wait(), 5)
    assert watch.tighten(0.3, "limited", lambda: fired.append(True))
    with pytest.raises(Stalled) as info:
        await asyncio.wait_for(waiting, 5)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert info.value.cause == "limited" and fired == [True]
    watch.close()


async def test_a_tightened_limit_keeps_a_stream_with_chunks_inside_it_and_reset_restores_it():
    watch = StallWatch(30.0)
    assert not watch.tighten(60.0, "never longer")  # a limit is only ever shortened
    assert watch.limit_s == 30.0 and watch.cause is None
    assert watch.tighten(0.3, "limited")
    iterator = paced([0.05] * 12).__aiter__()  # 0.6 s in all: twice the tightened limit
    assert [await watch.next(iterator) for _ in range(12)] == list(range(12))
    watch.reset()
    assert (watch.limit_s, watch.cause) == (30.0, None)
    watch.close()


async def test_no_timer_per_chunk(monkeypatch):
    """The cheap path stays cheap: one timer for a stream of many quick chunks, not one each."""
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when, callback, *args, **kwargs):
        armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    watch = StallWatch(5.0)
    iterator = paced([0.0] * 200).__aiter__()
    assert [await watch.next(iterator) for _ in range(200)] == list(range(200))
    assert len(armed) == 1
    watch.close()


class _Stream:
    """Anything weakly referable stands for a ``ResumingStream`` in the registry."""


def test_the_registry_is_bounded_and_forgets_a_part_once():
    live = LiveStreams(max_parts=2)
    streams = [_Stream() for _ in range(3)]
    watches = [StallWatch(None) for _ in range(3)]
    parts = [live.add("p1", watch, stream) for watch, stream in zip(watches, streams, strict=True)]
    assert parts[2] is None and live.untracked == 1 and len(live) == 2
    assert {part.stream() for part in live.on("p1")} == set(streams[:2])
    live.remove(parts[0])
    live.remove(parts[0])  # twice: the stream's break and its ``finally`` both remove it
    live.remove(parts[2])  # never added
    assert len(live) == 1 and live.on("p2") == []
    live.remove(parts[1])
    assert len(live) == 0 and live.on("p1") == []


async def test_a_chunk_that_came_while_this_process_was_held_up_is_not_a_stall():
    """The loop itself is held up past the limit (a long synchronous callback: LiteLLM 1.110's
    success logging holds it for seconds) while the node's chunk arrives on the socket. The chunk
    and the due timer are seen in the same loop turn; the chunk wins."""
    mine, node = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=mine)

    async def lines():
        while True:
            yield await reader.readline()

    def held_up() -> None:
        time.sleep(0.5)  # the held-up loop under test, not a synchronisation
        node.send(b"chunk\n")

    watch = StallWatch(0.2)
    try:
        asyncio.get_running_loop().call_later(0.05, held_up)
        assert await watch.next(lines().__aiter__()) == b"chunk\n"
    finally:
        watch.close()
        writer.close()
        node.close()


class _Upstream:
    """A LiteLLM stream as an open builds it: closing it closes its connection to the engine."""

    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class _Opening:
    """``resumer.open`` on a target that answers just as the cut comes: it builds the stream, then
    (as LiteLLM's Router reads the first chunk ahead) awaits ``first_chunk`` before returning it."""

    def __init__(self) -> None:
        self.built: list[_Upstream] = []
        self.first_chunk = asyncio.get_running_loop().create_future()

    async def open(self, request, target, partial, parts, resume):
        upstream = _Upstream()
        self.built.append(upstream)
        await self.first_chunk
        return upstream, Part(target.deployment_id, ("resume-key",), []), None, {}


@pytest.mark.parametrize("how", ["ejected", "client_left"])
async def test_an_open_cut_as_its_stream_arrives_closes_that_stream(how):
    """The race of a continuation's open with its cut: the open's stream is built and its first
    chunk is in (the open is woken for it) when the target's ejection cuts the open, or the client
    leaves. The stream is closed, not dropped with its connection open (the engine would go on
    generating); the cut itself is what it was (``Stalled`` or the client's cancellation)."""
    live = LiveStreams()
    opening = _Opening()
    stream = ResumingStream(
        SimpleNamespace(live=live, open=opening.open), _Upstream(), StreamRequest("chat", [])
    )
    target = SimpleNamespace(deployment_id="p2", kind="vllm")
    task = asyncio.ensure_future(stream._open(target, "text so far"))
    await wait_until(lambda: bool(opening.built), timeout=5, what="the open built its stream")
    [entry] = live.on("p2")
    assert entry.opening
    opening.first_chunk.set_result(None)  # in the same loop turn as the cut: no await between
    if how == "ejected":
        assert entry.watch.cut("p2 was ejected")
        with pytest.raises(Stalled, match="p2 was ejected"):
            await asyncio.wait_for(task, 5)
    else:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    await wait_until(lambda: opening.built[0].closed, timeout=5, what="the open's stream closed")
    assert live.on("p2") == [] and len(opening.built) == 1
