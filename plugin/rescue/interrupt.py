"""Fail one LiteLLM attempt in flight, from outside, so that LiteLLM retries it.

An attempt runs in an asyncio task inside LiteLLM's retry loop. At the pick (the plugin's
routing hook, in that task), ``capture`` notes the task and where the attempt lives on its stack
(``litellm_compat.attempt_frames``: the Router frame that awaits the call on LiteLLM 1.108.x, the
``router_rust`` step runner on 1.110.x). Later:

- ``state`` walks the task's chain of awaits down to that frame and asks the layout whether the
  attempt is waiting on its upstream call (nothing delivered to the client yet), not started yet
  (1.110 picks before the attempt's call), or gone;
- ``interrupt`` then makes the future the task waits on (a socket read, deep in the HTTP
  client) fail with the plugin's exception. It propagates like any transport error: the HTTP
  client closes the connection (the engine frees the request on disconnect), LiteLLM maps it to
  a retryable error, reports the failed attempt through its failure hook and retries.

``task.cancel()`` would be simpler but a ``CancelledError`` is never retried: it would end the
client's request. Where no layout is found (another LiteLLM layout) nothing is captured and the
attempt simply waits out its own timeout, as without the plugin.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import CodeType, CoroutineType, FrameType, GeneratorType
from typing import Any

from litellm_failover.litellm_compat.attempt_frames import AttemptState, Layout, find

__all__ = [
    "AttemptHandle",
    "AttemptInterrupted",
    "AttemptState",
    "capture",
    "interrupt",
    "rescuable",
    "state",
]

_MAX_CHAIN = 256  # awaits walked down from the task's coroutine (LiteLLM 1.110.2's are ~35 deep)


class AttemptInterrupted(TimeoutError):
    """An attempt the plugin gave up on (its deployment was ejected, or no first token came in
    time). A ``TimeoutError`` so that every layer (HTTP client, provider SDK, LiteLLM) maps it to
    a timeout, which LiteLLM retries on another deployment."""


@dataclass(slots=True)
class AttemptHandle:
    task: asyncio.Task[Any]
    layout: Layout


def capture(deployment_id: str) -> AttemptHandle | None:
    """Called from inside the pick hook, in the attempt's task, once ``deployment_id`` is picked:
    the attempt's handle, or None."""
    layout = find(1, deployment_id)  # from the caller up
    if layout is None:
        return None
    task = _running_task()
    return AttemptHandle(task, layout) if task is not None else None


_TASK: ContextVar[weakref.ref[asyncio.Task[Any]] | None] = ContextVar("litellm_failover_task", default=None)
"""The task this context last found itself running in. ``asyncio.current_task()`` asks for the
running loop, which checks the process id (a system call: over a microsecond on some virtual
machines) on every pick; each task runs in a context of its own, so the task is looked up once per
task and read back from here. A task created from this one starts with a copy of this context, and
so with its parent's task here: a task is taken only while its coroutine runs, which on this thread
only the current task's does."""


def _running_task() -> asyncio.Task[Any] | None:
    ref = _TASK.get()
    task = ref() if ref is not None else None
    if task is not None and getattr(task.get_coro(), "cr_running", False) is True:
        return task
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous call has no task to rescue
        return None
    if task is not None:
        _TASK.set(weakref.ref(task))
    return task


def state(handle: AttemptHandle) -> AttemptState:
    """Where the attempt stands: waiting on its upstream call, not started yet, or gone."""
    task = handle.task
    if task.done() or task.cancelling():
        return AttemptState.GONE  # a task being cancelled is its caller's, not a rescue's
    frame = handle.layout.frame
    for here, _code, awaited in _chain(task):
        if here is frame:
            return handle.layout.state(awaited)
    return AttemptState.GONE


def _chain(task: asyncio.Task[Any]) -> Iterator[tuple[FrameType | None, CodeType, Any]]:
    """The task's chain of awaits, outermost first: each coroutine (or generator) as its frame,
    its code and what it awaits now; it ends where something else than a Python coroutine is
    awaited (a future, a C or Cython coroutine)."""
    awaited: Any = task.get_coro()
    for _ in range(_MAX_CHAIN):
        if isinstance(awaited, CoroutineType):
            frame, code, awaited = awaited.cr_frame, awaited.cr_code, awaited.cr_await
        elif isinstance(awaited, GeneratorType):
            frame, code, awaited = awaited.gi_frame, awaited.gi_code, awaited.gi_yieldfrom
        else:
            return
        yield frame, code, awaited


def rescuable(handle: AttemptHandle) -> bool:
    """Whether the attempt can still be rescued: waiting on its call, or not started yet (an
    attempt not started yet must be kept: it is about to wait on a deployment the plugin may have
    given up on)."""
    return state(handle) is not AttemptState.GONE


def interrupt(handle: AttemptHandle, error: AttemptInterrupted) -> bool | None:
    """Fail the attempt with ``error`` if it is still waiting: True if it was failed, False if it
    is past its first byte (or gone), None if it cannot be failed safely at this instant, or has
    not started its call yet (try again shortly)."""
    now = state(handle)
    if now is AttemptState.GONE:
        return False
    if now is AttemptState.PENDING:
        return None
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
    if not _settled_safely(task):
        return None
    waiter.set_exception(error)
    return True


# The Python code that may await a future the rescue fails: code whose own resolver checks that
# the future is not done before it sets it (aiohttp's ``set_result``/``set_exception`` helpers,
# ``asyncio.Event``). A future an event loop resolves itself is never failed from outside: uvloop's
# ``sock_connect`` callback sets its future without that check (an ``InvalidStateError`` each
# time the socket becomes writable, with the descriptor still watched), and a new connection's
# waiter is resolved by a scheduled callback. Such an attempt is tried again shortly (it is
# connecting: nothing was sent), and counted as missed if it never gets to one of these.
_SAFE_AWAITERS: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("aiohttp/streams.py", None),  # StreamReader._wait, DataQueue.read: a response's bytes
    ("asyncio/locks.py", frozenset({"wait"})),  # Event.wait (anyio, httpcore's waits)
)


def _settled_safely(task: asyncio.Task[Any]) -> bool:
    """Whether the innermost Python coroutine of ``task`` (the one awaiting its future) is one
    whose future a failure from outside cannot upset."""
    innermost: CodeType | None = None
    awaits_future = False
    for _frame, code, awaited in _chain(task):
        if code.co_name == "__await__":
            awaits_future = True  # a pure-Python future's own iterator: ``innermost`` awaits it
            break
        innermost, awaits_future = code, type(awaited).__name__ == "FutureIter"  # a C future's
    if innermost is None or not awaits_future:
        return False  # awaiting something else than a future (a C or Cython coroutine)
    filename = innermost.co_filename.replace("\\", "/")
    return any(
        filename.endswith(suffix) and (names is None or innermost.co_name in names)
        for suffix, names in _SAFE_AWAITERS
    )
