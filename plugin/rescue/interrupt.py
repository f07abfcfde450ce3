"""Fail one LiteLLM attempt in flight, from outside, so that LiteLLM retries it.

This is the one place that reaches into how LiteLLM runs an attempt (LiteLLM 1.108.x); the rest
of the rescue works on ``AttemptHandle`` alone.

An attempt runs in an asyncio task inside the Router's retry loop: the Router picks a
deployment (``async_get_available_deployment``, which calls the plugin's
``async_filter_deployments``), then awaits the upstream call in the same coroutine frame (for a
stream, up to its first chunk: ``Router._acompletion`` reads it before returning). So:

- at the pick, ``capture`` notes the task and that frame (the caller of
  ``async_get_available_deployment``), found by walking up from the hook;
- the attempt has delivered nothing to the client exactly while that frame is still suspended
  in the task's chain of awaits (once it returns, a stream is the client's);
- ``interrupt`` then makes the future the task waits on (a socket read, deep in the HTTP
  client) fail with the plugin's exception. It propagates like any transport error: the HTTP
  client closes the connection (the engine frees the request on disconnect), LiteLLM maps it to
  a retryable error, reports the failed attempt through its failure hook and retries.

``task.cancel()`` would be simpler but a ``CancelledError`` is never retried: it would end the
client's request. Where the frame cannot be found (another LiteLLM layout) nothing is captured
and the attempt simply waits out its own timeout, as without the plugin.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from types import CoroutineType, FrameType, GeneratorType
from typing import Any

_PICK_FUNCTIONS = frozenset({"async_get_available_deployment"})
"""The Router functions that pick a deployment; their caller is the attempt."""
_MAX_DEPTH = 16  # frames walked up from the hook; LiteLLM 1.108.7's pick is 6 frames up


class AttemptInterrupted(TimeoutError):
    """An attempt the plugin gave up on (its deployment was ejected, or no first token came in
    time). A ``TimeoutError`` so that every layer (HTTP client, provider SDK, LiteLLM) maps it to
    a timeout, which LiteLLM retries on another deployment."""


@dataclass(slots=True)
class AttemptHandle:
    task: asyncio.Task[Any]
    frame: FrameType


def capture() -> AttemptHandle | None:
    """Called from inside the pick hook, in the attempt's task: the attempt's handle, or None."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous call has no task to rescue
        return None
    if task is None:
        return None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return None
        if frame.f_code.co_name in _PICK_FUNCTIONS:
            caller = frame.f_back
            return AttemptHandle(task, caller) if caller is not None else None
        frame = frame.f_back
    return None


def waiting(handle: AttemptHandle) -> bool:
    """Whether the attempt is still waiting on its upstream call (nothing delivered yet)."""
    task = handle.task
    if task.done():
        return False
    awaited: Any = task.get_coro()
    for _ in range(256):
        if isinstance(awaited, CoroutineType):
            if awaited.cr_frame is handle.frame:
                return True
            awaited = awaited.cr_await
        elif isinstance(awaited, GeneratorType):
            if awaited.gi_frame is handle.frame:
                return True
            awaited = awaited.gi_yieldfrom
        else:
            return False
    return False


def interrupt(handle: AttemptHandle, error: AttemptInterrupted) -> bool | None:
    """Fail the attempt with ``error`` if it is still waiting: True if it was failed, False if it
    is past its first byte (or gone), None if it cannot be failed safely at this instant (try
    again shortly)."""
    if not waiting(handle):
        return False
    task = handle.task
    waiter = getattr(task, "_fut_waiter", None)
    if not isinstance(waiter, asyncio.Future) or waiter.done():
        return None  # running right now, or between two awaits
    # Only a future nobody but this task listens to (a socket read, an event wait). A task, a
    # gather, or a thread's result (``run_in_executor``: LiteLLM builds some calls in a thread)
    # has other listeners that would keep the work running or trip on the failed future.
    callbacks = getattr(waiter, "_callbacks", None) or ()
    if isinstance(waiter, asyncio.Task) or any(
        getattr(cb[0], "__self__", None) is not task for cb in callbacks
    ):
        return None
    waiter.set_exception(error)
    return True
