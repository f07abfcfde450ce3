"""Counters that only events can give: failovers by reason, state changes by target state,
streams resumed and broken, requests rescued, drains started and completed.

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
from litellm_failover.metrics.catalog import (
    DRAINS_COMPLETED,
    DRAINS_STARTED,
    FAILOVERS,
    REQUESTS_RESCUED,
    STATE_CHANGES,
    STREAMS_BROKEN,
    STREAMS_RESUMED,
    MetricSpec,
)

# The bounded set of reason labels. A transition's ``source`` (health.Transition) names what moved
# a deployment; switching features name theirs in a failover event's ``details["source"]``.
# Anything else is counted as "other", so a label value never comes from free text.
REASONS = frozenset(
    {
        "probe",
        "traffic",
        "timer",
        "fleet",
        "panic",
        "manual",
        "drain",
        "ramp",
        "shift",
        "failback",
        "membership",
    }
)
REQUEST = "request"  # a request served by other than its first pick (request_failover events)
REFRESH = "refresh"  # the serving set changed on a table rebuild no transition caused
OTHER = "other"

# Events counted by group alone, and by deployment (labels: model_group, deployment, model_id).
_BY_GROUP = {EventType.STREAM_RESUMED: STREAMS_RESUMED, EventType.STREAM_BROKEN: STREAMS_BROKEN}
_BY_DEPLOYMENT = {EventType.DRAIN_STARTED: DRAINS_STARTED, EventType.DRAIN_COMPLETED: DRAINS_COMPLETED}
COUNTED = (FAILOVERS, STATE_CHANGES, REQUESTS_RESCUED, *_BY_GROUP.values(), *_BY_DEPLOYMENT.values())
RESCUE_CAUSES = frozenset({"ejected", "first_token_timeout"})


class EventCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # catalogue entry -> label values (in the entry's label order) -> count
        self._counts: dict[MetricSpec, Counter[tuple[str, ...]]] = {spec: Counter() for spec in COUNTED}
        # The last transition per group: ``FailoverCore`` emits a transition's state_change event
        # and then, from the same call, the failover event it caused; this pairs the two.
        self._cause: dict[str, tuple[str | None, str]] = {}

    def __call__(self, event: FailoverEvent) -> None:
        """The ``FailoverCore.listeners`` entry: cheap, and never raises into the core."""
        kind = event.event_type
        group = event.model_group
        deployment = event.deployment_id or ""
        if kind == EventType.STATE_CHANGE:
            source = str(event.details.get("source", ""))
            to_state = str(event.details.get("to_state", "")) or OTHER
            with self._lock:
                self._cause[group] = (event.deployment_id, source)
                self._counts[STATE_CHANGES][(group, deployment, deployment, to_state)] += 1
        elif kind == EventType.FAILOVER:
            reason = self._failover_reason(event)
            self._count(FAILOVERS, group, reason)
        elif kind == EventType.REQUEST_FAILOVER:
            self._count(FAILOVERS, group, REQUEST)
        elif kind == EventType.REQUEST_RESCUED:
            cause = str(event.details.get("cause", ""))
            self._count(
                REQUESTS_RESCUED, group, deployment, deployment, cause if cause in RESCUE_CAUSES else OTHER
            )
        elif kind in _BY_GROUP:
            self._count(_BY_GROUP[kind], group)
        elif kind in _BY_DEPLOYMENT:
            self._count(_BY_DEPLOYMENT[kind], group, deployment, deployment)

    def _count(self, spec: MetricSpec, *label_values: str) -> None:
        with self._lock:
            self._counts[spec][label_values] += 1

    def _failover_reason(self, event: FailoverEvent) -> str:
        declared = event.details.get("source")
        if declared is not None:
            return _bounded(declared)
        if event.deployment_id is None:
            return REFRESH
        with self._lock:
            deployment, source = self._cause.get(event.model_group, (None, ""))
        return _bounded(source) if deployment == event.deployment_id else OTHER

    def snapshot(self) -> dict[MetricSpec, dict[tuple[str, ...], int]]:
        """A copy of every count, for a scrape in another thread."""
        with self._lock:
            return {spec: dict(counts) for spec, counts in self._counts.items()}


def _bounded(source: Any) -> str:
    value = str(source)
    return value if value in REASONS else OTHER
