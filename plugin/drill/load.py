"""The drill's client load: concurrent mixed streaming / non-streaming requests through the openai SDK.

A fixed number of client slots (``--concurrency``) each send one request after another (a closed
loop, like a pool of application workers), and beside them new requests arrive on their own
every ``ARRIVAL_INTERVAL_S`` (an open loop, like new users): when a hung node holds every slot,
the arrivals still show how soon the gateway routes new work elsewhere. Every other request is
streamed. Per request the drill
keeps when it started, when each node's first byte arrived (a stream continued elsewhere by the
plugin changes ``system_fingerprint`` mid-answer, and the standby's first byte is the moment the
standby took over), when it ended and how.

Each answer is checked word for word against the fake vLLM's deterministic answer, so a stream
that "succeeds" with half an answer (silent truncation) is counted as broken, not as served.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI

from litellm_failover.drill.loadgen import messages_for
from litellm_failover.drill.profiles import short_id
from litellm_failover.providers.fake.text import expected_answer

WORDS = 24
TOKENS_PER_S = 100.0
CLIENT_TIMEOUT_S = 30.0
# A bound on requests per scenario far above what one proxy serves in the scenario's time.
MAX_REQUESTS_PER_S_PER_SLOT = 100
ARRIVAL_INTERVAL_S = 0.25
MAX_ARRIVALS_IN_FLIGHT = 32


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as the drill judges it; times are seconds since the scenario's load start."""

    index: int
    stream: bool
    start: float
    first_byte: float | None
    end: float
    ok: bool
    served_by: str | None  # the node that sent the last part of the answer
    error: str | None
    broken: bool  # a stream that delivered text then failed, or "succeeded" with the wrong text
    first_byte_by: dict[str, float] = field(default_factory=dict)  # node -> its first byte

    @property
    def client_error(self) -> bool:
        return not self.ok and not self.broken


def _node(group: str, fingerprint: Any) -> str | None:
    return short_id(group, fingerprint) if isinstance(fingerprint, str) and fingerprint else None


async def send_one(client: AsyncOpenAI, group: str, index: int, stream: bool, t0: float) -> Outcome:
    """Send request ``index`` to model group ``group`` and judge the answer."""
    messages = messages_for(index)
    started = time.monotonic()
    first_byte: float | None = None
    first_by: dict[str, float] = {}
    served_by: str | None = None
    text, ok, error = "", False, None
    try:
        response = await client.chat.completions.create(model=group, messages=messages, stream=stream)
        if stream:
            async for chunk in response:
                now = time.monotonic()
                first_byte = now if first_byte is None else first_byte
                node = _node(group, getattr(chunk, "system_fingerprint", None))
                if node is not None:
                    served_by = node
                    first_by.setdefault(node, now - t0)
                choices = getattr(chunk, "choices", None) or []
                if choices and choices[0].delta is not None and choices[0].delta.content:
                    text += choices[0].delta.content
        else:
            first_byte = time.monotonic()
            served_by = _node(group, getattr(response, "system_fingerprint", None))
            if served_by is not None:
                first_by[served_by] = first_byte - t0
            text = response.choices[0].message.content or ""
        ok = True
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    ended = time.monotonic()
    broken = stream and not ok and first_byte is not None
    if ok and text != expected_answer(messages, WORDS):
        ok, broken = False, stream
        error = f"answer differs from the uninterrupted answer ({len(text)} chars received)"
    return Outcome(
        index=index,
        stream=stream,
        start=started - t0,
        first_byte=None if first_byte is None else first_byte - t0,
        end=ended - t0,
        ok=ok,
        served_by=served_by,
        error=error,
        broken=broken,
        first_byte_by=first_by,
    )


def client_for(url: str, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S)


async def run_scenario_load(
    client: AsyncOpenAI,
    group: str,
    *,
    t0: float,
    concurrency: int,
    stop: asyncio.Event,
    deadline_s: float,
    on_outcome: Callable[[Outcome], None],
    index_base: int = 0,
) -> list[Outcome]:
    """``concurrency`` slots plus open-loop arrivals send requests until ``stop`` is set;
    bounded in time, in count and (arrivals) in requests in flight."""
    counter = itertools.count()
    cap = int(deadline_s * MAX_REQUESTS_PER_S_PER_SLOT * (concurrency + 1))
    deadline = time.monotonic() + deadline_s
    outcomes: list[Outcome] = []

    async def one() -> bool:
        index = next(counter)
        if index >= cap:
            return False
        outcome = await send_one(client, group, index_base + index, index % 2 == 0, t0)
        outcomes.append(outcome)
        on_outcome(outcome)
        return True

    async def slot() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            if not await one():
                return

    async def arrivals() -> None:
        in_flight: set[asyncio.Task[bool]] = set()
        while not stop.is_set() and time.monotonic() < deadline:
            if len(in_flight) < MAX_ARRIVALS_IN_FLIGHT:
                task = asyncio.create_task(one())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ARRIVAL_INTERVAL_S)
        if in_flight:
            await asyncio.gather(*in_flight)

    await asyncio.gather(arrivals(), *(slot() for _ in range(concurrency)))
    return outcomes
