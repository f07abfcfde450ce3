"""The inter-token timeout (``streams.inter_token_timeout_s``) for about a clock read per chunk.

``asyncio.timeout`` around each chunk would schedule and cancel a timer per chunk: a few
microseconds each, and a heap of cancelled timers in a loop that streams thousands of chunks a
second. A stream's chunks come far more often than its timeout, so one timer per stream is
enough: when it fires it looks at when the current wait began, re-arms for the rest of it, and
only a wait that really lasted the whole timeout is cancelled, the way ``asyncio.timeout``
cancels (an outside cancellation at the same moment still wins).

An ejection (``streams.ejection``) acts on a watch from outside, once per ejection, never per
chunk: ``cut`` breaks the current wait now, ``tighten`` shortens the limit (the current wait
counted from its start) and re-arms the one timer for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Stalled(Exception):
    """No chunk came within the inter-token timeout; ``cause`` says why when the wait was cut or
    limited from outside (the deployment was ejected), None for the plain timeout."""

    def __init__(self, cause: str | None = None) -> None:
        super().__init__(cause or "no chunk within the inter-token timeout")
        self.cause = cause


class StallWatch:
    def __init__(self, limit_s: float | None) -> None:
        self.base_s = limit_s  # the stream's own limit; ``reset`` goes back to it
        self.limit_s = limit_s
        self.cause: str | None = None  # why ``limit_s`` is shorter than ``base_s`` (``tighten``)
        self._on_stall: Callable[[], None] | None = None
        self._began = 0.0
        self._deadline = 0.0
        self._waiting: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False
        self._fired_cause: str | None = None

    async def next(self, iterator: Any) -> Any:
        """``await iterator.__anext__()``, raising ``Stalled`` if it takes longer than the limit."""
        return await self.wait(iterator.__anext__())

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable`` as a wait for a chunk: limited, cut and tightened like one (a
        continuation's open is waited on this way, so an ejection can cut it too)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # The wait's start and task are kept even without a limit: an ejection asks how long
        # this wait has lasted, and cuts it.
        self._began = loop.time()
        self._waiting = task
        if self.limit_s is not None:
            self._deadline = self._began + self.limit_s
            if self._handle is None:
                self._handle = loop.call_at(self._deadline, self._check)
        try:
            item = await awaitable
        except BaseException as exc:
            if not self._fired:
                raise
            self._fired = False
            if task.uncancel() > 0:
                raise  # cancelled from outside too (the client left): that cancellation wins
            cause = None if isinstance(exc, asyncio.CancelledError) else exc
            raise Stalled(self._fired_cause) from cause
        finally:
            self._waiting = None
        if self._fired:  # the upstream swallowed our cancellation and answered anyway
            self._fired = False
            task.uncancel()
        return item

    def silent_s(self) -> float | None:
        """How long the current wait for a chunk has lasted; None between waits (the consumer
        has not asked for the next chunk yet, so nothing is being waited on)."""
        if self._waiting is None:
            return None
        return asyncio.get_running_loop().time() - self._began

    def cut(self, cause: str) -> bool:
        """Break the current wait now: it raises ``Stalled(cause)``. False between waits."""
        task = self._waiting
        if task is None or self._fired:
            return False
        self._fire(task, cause)
        return True

    def tighten(self, limit_s: float, cause: str, on_stall: Callable[[], None] | None = None) -> bool:
        """From now on a wait longer than ``limit_s`` is a stall with ``cause`` (the current wait
        counts from its start); ``on_stall`` runs when that limit fires. False when the limit is
        already as short: the stream's own timeout then stays in charge, with its own cause."""
        if self.limit_s is not None and self.limit_s <= limit_s:
            return False
        self.limit_s = limit_s
        self.cause = cause
        self._on_stall = on_stall
        if self._handle is not None:  # armed for the longer limit: re-arm for this one
            self._handle.cancel()
            self._handle = None
        if self._waiting is not None:
            loop = asyncio.get_running_loop()
            self._deadline = self._began + limit_s
            self._handle = loop.call_at(self._deadline, self._check)
        return True

    def reset(self) -> None:
        """Back to the stream's own limit (its next part runs on another deployment). A timer
        armed for the shorter one finds its wait not due and re-arms."""
        self.limit_s = self.base_s
        self.cause = None
        self._on_stall = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        task = self._waiting
        if task is None or self._fired:
            return  # between waits: the next one re-arms
        loop = asyncio.get_running_loop()
        if self.limit_s is None:
            return  # reset to no limit after this timer was armed
        if loop.time() < self._deadline:
            self._handle = loop.call_at(self._deadline, self._check)
            return
        # Due. After the loop itself was held up (a long synchronous callback), this timer runs
        # before the task wakes for the chunk that came meanwhile: one more loop turn lets it
        # take that chunk first, so a stall of this process is not taken for the node's.
        loop.call_soon(self._confirm, task, self._began)

    def _confirm(self, task: asyncio.Task[Any], began: float) -> None:
        if self._waiting is not task or self._began != began or self._fired:
            return  # a chunk came: the wait this timer was for is over (the next one re-arms)
        if self.cause is not None and self._on_stall is not None:
            self._on_stall()
        self._fire(task, self.cause)

    def _fire(self, task: asyncio.Task[Any], cause: str | None) -> None:
        self._fired = True
        self._fired_cause = cause
        task.cancel()
