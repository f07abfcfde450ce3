"""A bounded, mixed streaming / non-streaming load, shared by the demo, the tests and the benches.

Each request records who served it (the fake vLLM's ``system_fingerprint`` names the server), when
its first chunk came, and whether a stream broke after it started, so a caller can tell errors a
client would see from streams that were already in flight when a node died.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestResult:
    index: int
    stream: bool
    started_at: float
    ended_at: float = 0.0
    ok: bool = False
    served_by: str | None = None
    first_chunk_at: float | None = None
    error: str | None = None
    text: str = ""

    @property
    def broken_stream(self) -> bool:
        """A stream that delivered something and then failed: half an answer."""
        return self.stream and not self.ok and self.first_chunk_at is not None

    @property
    def latency_s(self) -> float:
        return self.ended_at - self.started_at


Sender = Callable[[int, bool], Awaitable[RequestResult]]


def messages_for(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"request {index}: tell me about failover"}]


def router_sender(router: Any, model: str, **extra: Any) -> Sender:
    """Send through ``litellm.Router.acompletion`` (the SDK path)."""
    return _sender(
        lambda index, stream: router.acompletion(
            model=model, messages=messages_for(index), stream=stream, **extra
        )
    )


def openai_sender(client: Any, model: str, **extra: Any) -> Sender:
    """Send through the openai SDK's ``chat.completions.create`` (the proxy path)."""
    return _sender(
        lambda index, stream: client.chat.completions.create(
            model=model, messages=messages_for(index), stream=stream, **extra
        )
    )


def _sender(create: Callable[[int, bool], Awaitable[Any]]) -> Sender:
    """Both clients answer in the same shapes: a response with ``system_fingerprint`` and
    ``choices``, or an async iterator of chunks; one body records either."""

    async def send(index: int, stream: bool) -> RequestResult:
        result = RequestResult(index=index, stream=stream, started_at=time.monotonic())
        try:
            response = await create(index, stream)
            if stream:
                async for chunk in response:
                    _take_chunk(result, chunk)
            else:
                result.served_by = getattr(response, "system_fingerprint", None)
                result.text = response.choices[0].message.content or ""
            result.ok = True
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        result.ended_at = time.monotonic()
        return result

    return send


def _take_chunk(result: RequestResult, chunk: Any) -> None:
    if result.first_chunk_at is None:
        result.first_chunk_at = time.monotonic()
    fingerprint = getattr(chunk, "system_fingerprint", None)
    if fingerprint:
        result.served_by = fingerprint
    choices = getattr(chunk, "choices", None) or []
    if choices and choices[0].delta is not None and choices[0].delta.content:
        result.text += choices[0].delta.content


async def run_load(
    send: Sender,
    *,
    total: int,
    concurrency: int,
    stream_every: int = 2,
    deadline_s: float = 120.0,
    on_result: Callable[[RequestResult], None] | None = None,
    stop: asyncio.Event | None = None,
) -> list[RequestResult]:
    """Run at most ``total`` requests, ``concurrency`` at a time, every ``stream_every``-th one
    streamed; stop early at ``deadline_s`` or when ``stop`` is set. Always bounded."""
    counter = itertools.count()
    results: list[RequestResult] = []
    deadline = time.monotonic() + deadline_s

    async def worker() -> None:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            index = next(counter)
            if index >= total:
                return
            result = await send(index, stream_every > 0 and index % stream_every == 0)
            results.append(result)
            if on_result is not None:
                on_result(result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    results.sort(key=lambda r: r.index)
    return results
