"""Two small tools of the background workers (store writer, alerts, fleet link, control plane).

``RateLimit`` keeps a repeated warning to one log line per interval and counts what it held
back, so the next line can say so. ``wake`` sets an ``asyncio.Event`` of a worker's loop from
any thread: LiteLLM runs some callbacks in threads, and ``Event.set`` is only safe on its own loop
(``litellm_failover.worker``, the workers' shared shape, wakes through it).
"""

from __future__ import annotations

import asyncio
import threading
import time


class RateLimit:
    """At most one log line per interval; counts what it held back, so the next line can say so."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0
        self.suppressed = 0

    def allow(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now >= self._next:
            self._next = now + self.interval_s
            return True
        self.suppressed += 1
        return False

    def due(self) -> int | None:
        """``allow()`` for a caller whose line says how many were held back: that count (and it
        starts again from zero), or None to stay quiet."""
        if not self.allow():
            return None
        held, self.suppressed = self.suppressed, 0
        return held

    def reset(self) -> None:
        self._next = 0.0
        self.suppressed = 0


def wake(
    event: asyncio.Event | None, loop: asyncio.AbstractEventLoop | None, loop_thread: int | None
) -> None:
    """Set ``event`` (of ``loop``, running in thread ``loop_thread``) from whichever thread we are in."""
    if event is None or event.is_set():
        return
    try:
        if threading.get_ident() == loop_thread:
            event.set()
        elif loop is not None:
            loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # the loop is closed: whatever was queued stays queued, nothing to wake
        pass
