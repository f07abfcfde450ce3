"""``Worker``: the one shape of the plugin's background tasks (store writer, alerts, fleet link,
control plane): start, stop, backoff with jitter, health.

Each of those components owns one long-running task that must never touch the request path,
must survive its service (database, Redis, a webhook) going away, and must let the proxy shut
down on time. Written four times by hand, each got a slightly different stop; this is the one:

- ``start(body)`` is idempotent: a second call while the task exists does nothing.
- ``stop(grace_s, cancel_wait_s)`` cannot hang: it asks the body to finish (``stopping``, and
  the ``kick`` that cuts a backoff short), waits at most ``grace_s``, then cancels the task
  (and the ``spawn``-ed children) and waits at most ``cancel_wait_s`` more. Every wait is
  ``asyncio.wait`` or ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11 that can
  swallow a cancellation racing the completion of what it waits for (``git log --grep
  cancellation``), and a cancellation of ``stop()`` itself still propagates.
- ``Backoff``: exponential with jitter, bounded by its ``max_s``, so replicas that lost the
  same service do not retry in lockstep, and never wait longer than their setting says.
- ``health()``: running, consecutive failures, the class of the last error (never its text: a
  driver's message can quote a URL with its password) and the time of the last success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litellm_failover.events import utcnow
from litellm_failover.wakeups import wake

STOP_RETRY_S = 0.25
"""While stopping, a retry waits at most this long: ``stop()`` has a deadline, keep trying until
it passes."""

Body = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait after the n-th failure in a row: ``first_s`` doubling up to ``max_s``, each wait
    spread by +/- ``jitter`` (a fraction) and never above ``max_s``."""

    first_s: float
    max_s: float
    jitter: float = 0.2

    def step(self, failures: int) -> float:
        """The un-jittered wait after ``failures`` failures in a row (0 after none)."""
        if failures <= 0:
            return 0.0
        return min(self.max_s, self.first_s * 2.0 ** min(failures - 1, 64))

    def delay(self, failures: int) -> float:
        spread = random.uniform(1.0 - self.jitter, 1.0 + self.jitter)  # no retries in lockstep
        return min(self.max_s, self.step(failures) * spread)


class Worker:
    """One component's background task and its bookkeeping. The asyncio methods belong to the
    loop that called ``start``; ``wake`` may be called from any thread."""

    def __init__(self, name: str, logger: logging.Logger, backoff: Backoff | None = None) -> None:
        self.name = name
        self.backoff = backoff
        self._logger = logger
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.wakeup: asyncio.Event | None = None  # there is work: the body's own idle wait
        self.kick: asyncio.Event | None = None  # flush() or stop(): cut a backoff short
        self._attempted: asyncio.Event | None = None
        self._children: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.failures = 0  # in a row
        self.last_error_class: str | None = None
        self.last_success: datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def started(self) -> bool:
        """A task was started and ``stop`` has not cleared it; it may have ended since (a writer
        that ``finish``-ed and ``cancel``-ed stays started, so it is never started twice)."""
        return self.task is not None

    def start(self, body: Body, *, crash_message: Callable[[], str] | None = None) -> bool:
        """Run ``body()`` as the task on the running loop; False, and nothing done, when it was
        started already. A bug that ends the body is logged, as ``crash_message()`` says."""
        if self.task is not None:
            return False
        self.stopping = False
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.wakeup = asyncio.Event()
        self.kick = asyncio.Event()
        self._attempted = asyncio.Event()
        self.task = asyncio.create_task(self._guard(body, crash_message), name=self.name)
        return True

    async def _guard(self, body: Body, crash_message: Callable[[], str] | None) -> None:
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not a service error (those are caught per attempt)
            self.last_error_class = type(exc).__name__
            message = crash_message() if crash_message is not None else f"{self.name} stopped unexpectedly"
            self._logger.exception("%s", message)

    def attempted(self) -> None:
        """The body made its first attempt (connected or not): ``wait_attempted`` returns."""
        if self._attempted is not None:
            self._attempted.set()

    async def wait_attempted(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the body's first attempt, so a component whose
        service is up is ready when ``start`` returns, and one whose service is down is not
        held up."""
        if self._attempted is None or self.task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._attempted.wait()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A short task of this worker's (one delivery, one acknowledgement): tracked, and
        cancelled by ``stop`` with the main task if it has not ended by then."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return task

    @property
    def children(self) -> set[asyncio.Task[None]]:
        return set(self._children)

    def request_stop(self) -> None:
        """Tell the body to finish: ``stopping`` is set, its idle wait and any backoff end."""
        self.stopping = True
        self.wake(self.kick)
        self.wake(self.wakeup)

    async def finish(self, grace_s: float) -> bool:
        """``request_stop``, then wait at most ``grace_s`` for the task to end; True if it did."""
        self.request_stop()
        task = self.task
        if task is None or task.done():
            return True
        # asyncio.wait neither cancels on timeout nor raises the task's outcome, and a
        # cancellation of the caller still propagates.
        await asyncio.wait({task}, timeout=max(grace_s, 0.0))
        return task.done()

    async def cancel(self, wait_s: float) -> None:
        """Cancel the task and the children still running; wait at most ``wait_s`` for them."""
        pending = [t for t in (self.task, *self._children) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=max(wait_s, 0.01))

    async def stop(self, grace_s: float, cancel_wait_s: float) -> None:
        """``finish(grace_s)``, then ``cancel(cancel_wait_s)`` what is left: at most the sum.
        The worker can be started again afterwards."""
        try:
            await self.finish(grace_s)
        except asyncio.CancelledError:  # stop() itself cancelled: the task must not outlive it
            for task in (self.task, *self._children):
                if task is not None:
                    task.cancel()
            self.task = None
            raise
        await self.cancel(cancel_wait_s)
        self.task = None

    # -- waiting --------------------------------------------------------------------------

    def wake(self, event: asyncio.Event | None = None) -> None:
        """Set ``event`` (default: ``wakeup``) from whichever thread we are in."""
        wake(event if event is not None else self.wakeup, self.loop, self.loop_thread)

    async def pause(self, seconds: float) -> None:
        """Wait before the next attempt; a kick (``flush``, ``stop``) ends the wait at once.

        A kick that arrived while the failed attempt ran is honoured (it is cleared after the
        wait, not before), so a ``stop`` racing a failure does not sit out a whole backoff.
        While stopping, at most ``STOP_RETRY_S``."""
        assert self.kick is not None
        if self.stopping:
            seconds = min(seconds, STOP_RETRY_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self.kick.wait()
        self.kick.clear()

    async def retry_pause(self) -> None:
        """``pause`` for as long as ``backoff`` says after the failures so far."""
        assert self.backoff is not None
        await self.pause(self.backoff.delay(self.failures))

    async def every(self, interval_s: float, action: Body, what: str) -> None:
        """A body: ``action()`` every ``interval_s`` until stopped. A failing round is logged
        (as ``what``) and counted; the next one comes all the same."""
        while not self.stopping:
            await self.pause(interval_s)
            if self.stopping:
                return
            try:
                await action()
            except Exception as exc:  # a bug must not end the loop: log it and go on
                self.failed(exc)
                self._logger.exception("%s failed", what)
            else:
                self.succeeded()

    # -- health ---------------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error_class = type(exc).__name__

    def succeeded(self) -> None:
        self.failures = 0
        self.last_success = utcnow()

    def health(self) -> dict[str, Any]:
        """For ``status()``: free of error text, so free of credentials."""
        return {
            "running": self.running,
            "consecutive_failures": self.failures,
            "last_error_class": self.last_error_class,
            "last_success": self.last_success.isoformat() if self.last_success else None,
        }
