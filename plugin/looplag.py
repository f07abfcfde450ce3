"""Was it the service or the event loop? A timer that notices when the loop itself stood still.

A database or Redis call bounded by a timeout fails with ``TimeoutError`` when the service is slow,
but also when something ran synchronously on the event loop (a tokenizer download inside LiteLLM,
a blocking DNS lookup): the reply may have arrived on time and sat unread until the loop came back,
and by then the deadline had passed. Logging "database unavailable" then sends an operator to a
healthy database. ``LoopWatch`` runs a cheap repeating timer for the duration of one call; a tick
that fires late by ``BLOCKED_S`` or more is a stall, and a call that fails as a stall ends had its
deadline pass while the loop stood still. A stall early in a call that then failed on its own
time leaves the blame with the service.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

TICK_S = 0.1
BLOCKED_S = 1.0  # a stall this long is not scheduling noise, even on a loaded 2-core machine
_ENDED_WITH_S = 0.5  # a call that failed this soon after a stall ended failed because of it


class LoopWatch:
    """``with LoopWatch() as watch: await call()``; then ``watch.blocked_s``: how long the loop
    had stood still when the call ended, or None when the call did not end in a stall."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self._tick_s = tick_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._stall_s = 0.0  # the last stall of BLOCKED_S or more, and when the loop came back
        self._stall_ended = -math.inf
        self._exited: float | None = None

    @property
    def blocked_s(self) -> float | None:
        if self._exited is None or self._exited - self._stall_ended > _ENDED_WITH_S:
            return None
        return self._stall_s

    def __enter__(self) -> LoopWatch:
        self._loop = asyncio.get_running_loop()
        self._schedule()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # The tick that was due may not have run yet: the stall it would have seen still counts.
        self._note(self._loop.time() - self._due)
        self._exited = self._loop.time()

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self._tick_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._note(self._loop.time() - self._due)
        self._schedule()

    def _note(self, late_s: float) -> None:
        assert self._loop is not None
        if late_s >= BLOCKED_S:
            self._stall_s = late_s
            self._stall_ended = self._loop.time()


def caused_by_timeout(exc: BaseException) -> bool:
    """Whether a timeout is anywhere in the chain (SQLAlchemy wraps the driver's)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, TimeoutError):
            return True
        seen.add(id(current))
        stack += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return False


def blocked_loop_message(blocked_s: float, what: str) -> str:
    """The words for a call that failed because the loop stood still, not because ``what`` did."""
    return (
        f"the event loop was blocked for {blocked_s:.1f} s by synchronous work in this process; "
        f"the {what} itself may be fine"
    )
