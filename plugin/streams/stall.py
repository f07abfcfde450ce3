"""The inter-token timeout (``streams.inter_token_timeout_s``) for about a clock read per chunk.

``asyncio.timeout`` around each chunk would schedule and cancel a timer per chunk: a few
microseconds each, and a heap of cancelled timers in a loop that streams thousands of chunks a
second. A stream's chunks come far more often than its timeout, so one timer per stream is
enough: when it fires it looks at when the current wait began, re-arms for the rest of it, and
only a wait that really lasted the whole timeout is cancelled, the way ``asyncio.timeout``
cancels (an outside cancellation at the same moment still wins).
"""

from __future__ import annotations

import asyncio
from typing import Any


class Stalled(Exception):
    """No chunk came within the inter-token timeout."""


class StallWatch:
    def __init__(self, limit_s: float | None) -> None:
        self.limit_s = limit_s
        self._deadline = 0.0
        self._waiting: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    async def next(self, iterator: Any) -> Any:
        """``await iterator.__anext__()``, raising ``Stalled`` if it takes longer than the limit."""
        if self.limit_s is None:
            return await iterator.__anext__()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._deadline = loop.time() + self.limit_s
        self._waiting = task
        if self._handle is None:
            self._handle = loop.call_at(self._deadline, self._check)
        try:
            item = await iterator.__anext__()
        except BaseException as exc:
            if not self._fired:
                raise
            self._fired = False
            if task.uncancel() > 0:
                raise  # cancelled from outside too (the client left): that cancellation wins
            raise Stalled from (None if isinstance(exc, asyncio.CancelledError) else exc)
        finally:
            self._waiting = None
        if self._fired:  # the upstream swallowed our cancellation and answered anyway
            self._fired = False
            task.uncancel()
        return item

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        task = self._waiting
        if task is None:
            return  # between waits: the next one re-arms
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._handle = loop.call_at(self._deadline, self._check)
            return
        self._fired = True
        task.cancel()
