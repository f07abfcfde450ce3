"""Counters that only events can give: failovers by reason, state changes by target state.

Everything else the metrics show is read from the plugin's state at scrape time; a count of
failovers is not in any state, so ``EventCounters`` listens to the core's events
(``FailoverCore.listeners``). The listener runs on the event loop inside ``FailoverCore.emit``,
which happens on a health change, never per routed request. A scrape reads the counts from
another thread (LiteLLM renders /metrics in a worker thread), hence the lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from litellm_failover.events import EventType, FailoverEvent

# The bounded set of reason labels. A transition's ``source`` (health.Transition) names what moved
# a deployment; switching features name theirs in a failover event's ``details["source"]``.
# Anything else is counted as "other", so a label value never comes from free text.
REASONS = frozenset(
    {"probe", "traffic", "timer", "fleet", "panic", "manual", "drain", "ramp", "shift", "failback"}
)
REQUEST = "request"  # a request served by other than its first pick (request_failover events)
REFRESH = "refresh"  # the serving set changed on a table rebuild no transition caused
OTHER = "other"


class EventCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failovers: Counter[tuple[str, str]] = Counter()  # (group, reason)
        self._state_changes: Counter[tuple[str, str, str]] = Counter()  # (group, deployment, to_state)
        # The last transition per group: ``FailoverCore`` emits a transition's state_change event
        # and then, from the same call, the failover event it caused; this pairs the two.
        self._cause: dict[str, tuple[str | None, str]] = {}

    def __call__(self, event: FailoverEvent) -> None:
        """The ``FailoverCore.listeners`` entry: cheap, and never raises into the core."""
        kind = event.event_type
        if kind == EventType.STATE_CHANGE:
            source = str(event.details.get("source", ""))
            to_state = str(event.details.get("to_state", "")) or OTHER
            with self._lock:
                self._cause[event.model_group] = (event.deployment_id, source)
                self._state_changes[(event.model_group, event.deployment_id or "", to_state)] += 1
        elif kind == EventType.FAILOVER:
            reason = self._failover_reason(event)
            with self._lock:
                self._failovers[(event.model_group, reason)] += 1
        elif kind == EventType.REQUEST_FAILOVER:
            with self._lock:
                self._failovers[(event.model_group, REQUEST)] += 1

    def _failover_reason(self, event: FailoverEvent) -> str:
        declared = event.details.get("source")
        if declared is not None:
            return _bounded(declared)
        if event.deployment_id is None:
            return REFRESH
        deployment, source = self._cause.get(event.model_group, (None, ""))
        return _bounded(source) if deployment == event.deployment_id else OTHER

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], int]]:
        with self._lock:
            return dict(self._failovers), dict(self._state_changes)


def _bounded(source: Any) -> str:
    value = str(source)
    return value if value in REASONS else OTHER
