"""Closing an upstream a resuming stream is done with: its HTTP connection goes back or away, so
the engine behind it frees the request. Bounded and never raising: a dead node's close must not
hold the client or fail its stream.

``open_guarded`` is the same care for a continuation being opened when its wait is cut (the
target's ejection, the open's stall limit) or the client leaves: the upstream the open built is
closed, never dropped half-received with its connection open and the engine still generating.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CLOSE_TIMEOUT_S = 2.0

_closing: set[asyncio.Task[None]] = set()  # closes running off the client's path (kept referenced)
_abandoned: set[asyncio.Task[Any]] = set()  # opens given up on, until they settle (kept referenced)


async def close_upstream(stream: Any) -> None:
    """Close an upstream (its HTTP connection goes back or away); bounded, never raising."""
    close = getattr(stream, "aclose", None)
    if close is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await close()


def close_later(stream: Any) -> None:
    """Close a broken upstream off the client's path: the continuation need not wait for it."""
    task = asyncio.get_running_loop().create_task(close_upstream(stream))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def open_guarded(
    opening: Coroutine[Any, Any, T],
    wait: Callable[[Awaitable[T]], Awaitable[T]],
    upstream_of: Callable[[T], Any],
) -> T:
    """``await wait(opening)``, without leaking the upstream ``opening`` builds when the wait ends
    some other way (``wait`` raised ``Stalled``, or the task was cancelled).

    Awaited in the caller's task, the open would take that cancellation wherever it is: at the
    await whose result (the stream LiteLLM built, its first chunk read) is already in and only
    waits for the task to resume, or at one LiteLLM makes after building the stream. LiteLLM
    closes nothing on a ``CancelledError``, so the stream would be left to garbage collection,
    its connection open and the engine generating. Here the open runs as its own task, shielded
    from the caller's cancellation; given up on, it is ``abandon``ed.
    """
    task = asyncio.get_running_loop().create_task(opening)
    try:
        return await wait(asyncio.shield(task))
    except BaseException:
        abandon(task, upstream_of)
        raise


def abandon(task: asyncio.Task[T], upstream_of: Callable[[T], Any]) -> None:
    """Give up on an open: the upstream it produced, or still produces, is closed (off the
    caller's path); one still running is cancelled after one loop turn, so an open already woken
    with its result (its step scheduled) first runs on to its return, where its upstream can be
    reached and closed, instead of taking the cancellation at that await and dropping it."""

    def settle(done: asyncio.Task[T]) -> None:
        _abandoned.discard(done)
        if done.cancelled() or done.exception() is not None:
            return  # nothing built, or LiteLLM's own failure path closed it (reported by ``open``)
        close_later(upstream_of(done.result()))

    if task.done():
        settle(task)
        return
    _abandoned.add(task)
    task.add_done_callback(settle)
    asyncio.get_running_loop().call_soon(task.cancel)
