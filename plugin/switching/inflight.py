"""Attempts in flight per deployment: what a drain waits for.

An attempt starts when ``FailoverPlugin.route`` picks a deployment for it and ends at the first
end signal LiteLLM gives for that (request, deployment): the success log event (for a stream,
sent once the stream has ended), the per-attempt failure hook, or the request-level failure event
(a stream cut after it started). The same attempt may be ended twice (LiteLLM reports some
failures through two hooks); the second end finds nothing and does nothing.

Lost end signals. An attempt can end without any hook firing (a client that disconnects from the
proxy mid-request, a task cancelled by a timeout LiteLLM does not report). Such an entry would
hold a drain until its timeout, so every entry carries its start time and is forgotten after
``ttl_s`` (``drain.in_flight_ttl_s``), counted in ``expired``. Entries are kept in start order,
so expiry pops from the front: amortised O(1) per attempt, never a scan. The table is bounded
(``max_entries``); beyond it the oldest entries expire early, counted the same way.

Everything runs on the plugin's event loop; a metrics scrape in another thread reads ``counts()``,
a copy made in one C call (atomic under the GIL).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable


class InFlight:
    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        # (request id, deployment id) -> [start time, attempts]; a request may (rarely) pick the
        # same deployment twice before the first attempt's end is seen.
        self._entries: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._counts: dict[str, int] = {}
        self.started = 0
        self.ended = 0
        self.expired: Counter[str] = Counter()
        self.listener: Callable[[str], None] | None = None  # called with a deployment whose count fell

    def start(self, request_id: str | None, deployment_id: str) -> None:
        """One attempt picked ``deployment_id``. Requests without an id cannot be matched to an end
        signal and are not tracked (LiteLLM gives every request a call id or a trace id)."""
        if request_id is None:
            return
        now = self.clock()
        key = (request_id, deployment_id)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = [now, 1.0]
        else:
            entry[1] += 1
        self._counts[deployment_id] = self._counts.get(deployment_id, 0) + 1
        self.started += 1
        self._expire(now)

    def end(self, request_keys: tuple[str, ...], deployment_id: str) -> bool:
        """An end signal for the attempt on ``deployment_id`` of the request named by any of
        ``request_keys`` (the hooks' candidate ids); False if none was in flight."""
        for request_id in request_keys:
            key = (request_id, deployment_id)
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry[1] > 1:
                entry[1] -= 1
            else:
                del self._entries[key]
            self._decrement(deployment_id)
            self.ended += 1
            return True
        return False

    def count(self, deployment_id: str) -> int:
        return self._counts.get(deployment_id, 0)

    def counts(self) -> dict[str, int]:
        return self._counts.copy()

    def expire(self) -> None:
        """Forget attempts older than the TTL (also done on every ``start``)."""
        self._expire(self.clock())

    def _expire(self, now: float) -> None:
        cutoff = now - self.ttl_s
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry[0] >= cutoff and len(entries) <= self.max_entries:
                return
            del entries[key]
            attempts = int(entry[1])
            deployment_id = key[1]
            self.expired[deployment_id] += attempts
            for _ in range(attempts):
                self._decrement(deployment_id)

    def _decrement(self, deployment_id: str) -> None:
        left = self._counts.get(deployment_id, 0) - 1
        if left > 0:
            self._counts[deployment_id] = left
        else:
            self._counts.pop(deployment_id, None)
        if self.listener is not None:
            self.listener(deployment_id)

    def stats(self) -> dict[str, object]:
        return {
            "in_flight": sum(self._counts.values()),
            "started": self.started,
            "ended": self.ended,
            "expired": sum(self.expired.values()),
            "ttl_s": self.ttl_s,
        }
