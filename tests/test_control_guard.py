"""The control plane's guarded calls tell a slow service apart from a blocked event loop.

A call that times out because Redis or the database did not answer in time is the service's
fault; a call whose deadline passed while something ran synchronously on the loop (LiteLLM once
downloaded a tokenizer there) is not, and saying "database unavailable" then misleads.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from litellm_failover.control import guard as guard_module
from litellm_failover.control.guard import Guard
from litellm_failover.looplag import BLOCKED_S, LoopWatch, caused_by_timeout

TIMEOUT_S = 0.2


async def never_answers() -> None:
    await asyncio.sleep(30)


async def test_a_slow_service_is_reported_as_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard(None, TIMEOUT_S)
    with caplog.at_level(logging.WARNING, logger="litellm_failover.control"):
        assert await guard.redis(never_answers()) is None
    assert guard.errors["redis"] == "TimeoutError"
    assert "control: redis unavailable (TimeoutError); retrying" in caplog.text
    assert "blocked" not in caplog.text


async def block_the_loop(for_s: float) -> None:
    await asyncio.sleep(0.05)
    time.sleep(for_s)  # noqa: ASYNC251 (the point: what a synchronous download on the loop does)


async def test_a_blocked_loop_is_named_instead_of_the_service(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard_module, "DATABASE_TIMEOUT_S", TIMEOUT_S)
    guard = Guard(None, TIMEOUT_S)
    blocker = asyncio.create_task(block_the_loop(BLOCKED_S + 0.5))
    with caplog.at_level(logging.WARNING, logger="litellm_failover.control"):
        assert await guard.database(never_answers()) is None
    await blocker
    error = guard.errors["database"]
    assert error is not None and error.startswith("TimeoutError: the event loop was blocked for 1.")
    assert "the database itself may be fine" in error
    assert "control: database call timed out: the event loop was blocked for" in caplog.text
    assert "database unavailable" not in caplog.text


async def test_a_short_stall_in_a_long_budget_leaves_the_blame_with_the_service() -> None:
    guard = Guard(None, 4 * BLOCKED_S)
    blocker = asyncio.create_task(block_the_loop(BLOCKED_S + 0.2))
    assert await guard.redis(never_answers()) is None  # the stall ended 2.8 s before the deadline
    await blocker
    assert guard.errors["redis"] == "TimeoutError"


async def test_the_watch_sees_a_stall_even_before_its_tick_runs() -> None:
    with LoopWatch(tick_s=0.05) as watch:
        time.sleep(BLOCKED_S + 0.2)  # noqa: ASYNC251 (the watch ends before its timer runs again)
    assert watch.blocked_s is not None and watch.blocked_s >= BLOCKED_S
    with LoopWatch(tick_s=0.05) as quiet:
        await asyncio.sleep(0.2)
    assert quiet.blocked_s is None


def test_a_timeout_is_found_behind_the_wrappers() -> None:
    try:
        try:
            raise TimeoutError
        except TimeoutError as inner:
            raise RuntimeError("connection failed") from inner
    except RuntimeError as outer:
        assert caused_by_timeout(outer)
    assert not caused_by_timeout(ConnectionRefusedError())
