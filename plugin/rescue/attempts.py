"""The attempts in flight that could still be rescued: picked, nothing delivered yet.

One entry per (request, deployment) attempt the plugin routed, with its ``AttemptHandle`` and,
for a stream, its first-token timer. An entry goes at the attempt's first end signal (the
request path's ``ended``), and ``prune`` (the plugin's refresh loop) drops the ones that can no
longer be rescued: a stream whose first chunk came (LiteLLM gives no signal for that), a task
that ended without any hook. Bounded: beyond ``max_attempts`` the oldest entries go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from litellm_failover.rescue.interrupt import AttemptHandle, rescuable


@dataclass(slots=True)
class Attempt:
    request_id: str
    deployment_id: str
    group: str
    stream: bool
    handle: AttemptHandle
    started_at: float
    timer: asyncio.TimerHandle | None = None

    def forget(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class AttemptRegistry:
    def __init__(self, *, max_attempts: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_attempts = max_attempts
        self.clock = clock
        self._attempts: OrderedDict[tuple[str, str], Attempt] = OrderedDict()

    def add(self, attempt: Attempt) -> None:
        key = (attempt.request_id, attempt.deployment_id)
        attempts = self._attempts
        previous = attempts.get(key)  # on every pick: a look-up is cheaper than a pop that misses
        if previous is not None:
            del attempts[key]
            previous.forget()  # the same request back on the same deployment: the old one ended
        attempts[key] = attempt
        while len(attempts) > self.max_attempts:
            _, oldest = attempts.popitem(last=False)
            oldest.forget()

    def get(self, request_id: str, deployment_id: str) -> Attempt | None:
        return self._attempts.get((request_id, deployment_id))

    def end(self, request_keys: tuple[str, ...], deployment_id: str) -> Attempt | None:
        """The attempt's first end signal: forget it; returns it (None if unknown)."""
        for request_id in request_keys:
            attempt = self._attempts.pop((request_id, deployment_id), None)
            if attempt is not None:
                attempt.forget()
                return attempt
        return None

    def discard(self, attempt: Attempt) -> None:
        key = (attempt.request_id, attempt.deployment_id)
        if self._attempts.get(key) is attempt:
            del self._attempts[key]
        attempt.forget()

    def on(self, deployment_id: str) -> Iterator[Attempt]:
        """The attempts on ``deployment_id``, oldest first (a copy: the caller may discard)."""
        return iter([a for a in self._attempts.values() if a.deployment_id == deployment_id])

    def prune(self) -> int:
        """Drop the entries that can no longer be rescued; returns how many went."""
        gone = [a for a in self._attempts.values() if not rescuable(a.handle)]
        for attempt in gone:
            self.discard(attempt)
        return len(gone)

    def __len__(self) -> int:
        return len(self._attempts)
