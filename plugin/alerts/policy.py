"""Which events become alerts: event-type filter, deduplication, and a per-group rate limit.

A flapping node produces the same failover again and again; people need to hear about it once,
and then hear that it keeps happening, not get a page per flap. So:

- dedup: an alert with the same group, event type, deployment, from/to and reason as one sent
  less than ``dedup_window_s`` ago is suppressed;
- rate limit: at most ``rate_limit_count`` alerts per group in any ``rate_limit_window_s``;
- every suppressed alert is counted per group, and the next alert sent for that group carries
  the counts ("4 similar alerts suppressed since the last one");
- when alerts were rate-limited, the group's latest suppressed alert is not lost: once the
  window has room again it is sent as a digest carrying the counts, so the last word people get
  matches the group's real state.

Pure bookkeeping, no I/O: ``admit`` runs on the hot path (called from the core's listener), is
O(1) amortised and bounded in memory. The caller serialises calls (the dispatcher holds a lock).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from litellm_failover.events import EventType, FailoverEvent

if TYPE_CHECKING:
    from litellm_failover.settings import AlertSettings

ALERT_FAILED = EventType.ALERT_FAILED.value
"""The event recorded when an alert is given up. It never alerts itself (no loops)."""

MAX_DEDUP_KEYS = 10_000  # far more distinct alerts than a window can hold; only memory insurance

DedupKey = tuple[str, str, str | None, str | None, str | None, str]


def dedup_key(event: FailoverEvent) -> DedupKey:
    return (
        event.model_group,
        event.event_type,
        event.deployment_id,
        event.from_deployment,
        event.to_deployment,
        event.reason,
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """An event that will be sent, with what was held back for its group since the last one."""

    event: FailoverEvent
    key: DedupKey
    suppressed_dedup: int = 0
    suppressed_rate: int = 0
    digest: bool = False  # the latest suppressed event, sent once the rate window had room

    @property
    def suppressed(self) -> int:
        return self.suppressed_dedup + self.suppressed_rate


@dataclass(slots=True)
class _Held:
    """What a group's suppressed alerts left behind: counts, and the latest of them.

    The digest sends the latest suppressed event of either kind: after a flapping node's last
    ejection (rate-limited) its recovery may be a duplicate, and the recovery is the news.
    """

    dedup: int = 0
    rate: int = 0
    latest: FailoverEvent | None = None


class AlertPolicy:
    def __init__(self, settings: AlertSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._types = frozenset(settings.event_types) - {ALERT_FAILED}
        self._dedup_window = settings.dedup_window_s
        self._limit = settings.rate_limit_count
        self._window = settings.rate_limit_window_s
        self._clock = clock
        self._recent: OrderedDict[DedupKey, float] = OrderedDict()  # key -> when sent, oldest first
        self._sent: dict[str, deque[float]] = {}  # group -> send times within the rate window
        self._held: dict[str, _Held] = {}
        self.suppressed_dedup = 0
        self.suppressed_rate = 0

    def wants(self, event_type: str) -> bool:
        return event_type in self._types

    def admit(self, event: FailoverEvent) -> Admission | None:
        """The alert to send for ``event``, or None if it is filtered out or suppressed."""
        if not self.wants(event.event_type):
            return None
        now = self._clock()
        self._expire(now)
        group = event.model_group
        key = dedup_key(event)
        if key in self._recent:
            self.suppressed_dedup += 1
            held = self._held.setdefault(group, _Held())
            held.dedup += 1
            held.latest = event
            return None
        if not self._has_room(group, now):
            self.suppressed_rate += 1
            held = self._held.setdefault(group, _Held())
            held.rate += 1
            held.latest = event
            return None
        return self._take(event, key, now, digest=False)

    def forget(self, key: DedupKey) -> None:
        """An alert that reached nobody: the same event again should be tried again, not
        suppressed as a duplicate of something nobody received."""
        self._recent.pop(key, None)

    def next_digest_at(self) -> float | None:
        """When the earliest waiting digest may be sent (clock time), or None if none waits."""
        due = None
        for group, held in self._held.items():
            if not held.rate or held.latest is None:
                continue
            sent = self._sent.get(group)
            at = sent[0] + self._window if sent and len(sent) >= self._limit else self._clock()
            due = at if due is None else min(due, at)
        return due

    def take_digests(self) -> list[Admission]:
        """Digests of rate-limited alerts for every group whose window has room now."""
        now = self._clock()
        self._expire(now)
        taken = []
        for group, held in list(self._held.items()):
            if held.rate and held.latest is not None and self._has_room(group, now):
                taken.append(self._take(held.latest, dedup_key(held.latest), now, digest=True))
        return taken

    # -- internals ------------------------------------------------------------------------

    def _has_room(self, group: str, now: float) -> bool:
        sent = self._sent.get(group)
        if sent is None:
            return True
        while sent and now - sent[0] >= self._window:
            sent.popleft()
        return len(sent) < self._limit

    def _take(self, event: FailoverEvent, key: DedupKey, now: float, *, digest: bool) -> Admission:
        group = event.model_group
        self._sent.setdefault(group, deque()).append(now)
        self._recent[key] = now
        self._recent.move_to_end(key)
        if len(self._recent) > MAX_DEDUP_KEYS:
            self._recent.popitem(last=False)
        held = self._held.pop(group, None) or _Held()
        return Admission(event, key, held.dedup, held.rate, digest=digest)

    def _expire(self, now: float) -> None:
        # Keys are ordered by send time (re-sending moves one to the end), so the expired ones
        # are at the front: amortised O(1).
        while self._recent:
            key, sent_at = next(iter(self._recent.items()))
            if now - sent_at < self._dedup_window:
                break
            del self._recent[key]
