"""Was it the service or the event loop? A timer that notices when the loop itself stood still.

A database or Redis call bounded by a timeout fails with ``TimeoutError`` when the service is slow,
but also when something ran synchronously on the event loop (a tokenizer download inside LiteLLM,
a blocking DNS lookup): the reply may have arrived on time and sat unread until the loop came back,
and by then the deadline had passed. Logging "database unavailable" then sends an operator to a
healthy database. ``LoopWatch`` runs a cheap repeating timer for the duration of one call; a tick
that fires late by more than ``BLOCKED_S`` means the loop was blocked, and for how long.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

TICK_S = 0.1
BLOCKED_S = 1.0  # a stall this long is not scheduling noise, even on a loaded 2-core machine


class LoopWatch:
    """``with LoopWatch() as watch: await call()``; then ``watch.blocked_for(limit_s)``: how long
    the loop stood still while the call ran, when that explains the call's timeout."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self._tick_s = tick_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.longest_stall_s = 0.0

    def blocked_for(self, limit_s: float) -> float | None:
        """The longest stall, if it took at least half of a ``limit_s`` time budget (and
        ``BLOCKED_S``): then the service had too little live time to be blamed for the timeout.
        A short stall early in a long budget leaves the service the blame it deserves."""
        return self.longest_stall_s if self.longest_stall_s >= max(BLOCKED_S, limit_s / 2) else None

    def __enter__(self) -> LoopWatch:
        self._loop = asyncio.get_running_loop()
        self._schedule()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._loop is not None:
            # The tick that was due may not have run yet: the stall it would have seen still counts.
            self._note(self._loop.time() - self._due)

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self._tick_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._note(self._loop.time() - self._due)
        self._schedule()

    def _note(self, late_s: float) -> None:
        self.longest_stall_s = max(self.longest_stall_s, late_s)


def blocked_loop_message(blocked_s: float, what: str) -> str:
    """The words for a call that failed because the loop stood still, not because ``what`` did."""
    return (
        f"the event loop was blocked for {blocked_s:.1f} s by synchronous work in this process; "
        f"the {what} itself may be fine"
    )
