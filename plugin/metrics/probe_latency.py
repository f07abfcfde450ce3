"""The ``probe_latency_seconds`` histogram: one observation per probe report, per deployment.

A gauge of the last probe's latency shows one sample in every interval and hides the rest; a
histogram keeps every probe, so ``histogram_quantile`` over ``rate(..._bucket[5m])`` shows a node
that slows down before its probes fail. The prober hands each report here as it arrives
(``Prober.report_listeners``), on the event loop, off the request path: probes are background
work. A scrape reads a copy from another thread (LiteLLM renders /metrics in a worker thread),
hence the lock.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from litellm_failover.metrics.catalog import PROBE_LATENCY_SECONDS
from litellm_failover.metrics.families import Buckets

if TYPE_CHECKING:
    from litellm_failover.providers.base import ProbeReport


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0


class ProbeLatency:
    def __init__(self, bounds: Sequence[float] = PROBE_LATENCY_SECONDS.buckets) -> None:
        self._bounds = (*sorted(bounds), float("inf"))
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}

    def observe(self, deployment_ids: Sequence[str], report: ProbeReport) -> None:
        """The prober's report listener: one round's report counts for each deployment it probed
        (several deployments can share one probe target)."""
        latency = max(0.0, float(report.latency_s))
        index = bisect.bisect_left(self._bounds, latency)  # ``le``: a value on a bound counts in it
        with self._lock:
            for deployment_id in deployment_ids:
                series = self._series.get(deployment_id)
                if series is None:
                    series = self._series[deployment_id] = _Series(len(self._bounds))
                series.counts[index] += 1
                series.sum += latency

    def snapshot(self) -> dict[str, Buckets]:
        """Cumulative buckets per deployment that has been probed at least once."""
        with self._lock:
            copies = {i: (list(s.counts), s.sum) for i, s in self._series.items()}
        result = {}
        for deployment_id, (counts, total) in copies.items():
            running = 0
            cumulative = []
            for bound, count in zip(self._bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            result[deployment_id] = Buckets(tuple(cumulative), total)
        return result

    def empty(self) -> Buckets:
        """The series of a probed deployment with no report yet: every bucket 0, so ``rate()``
        sees the series from its first sample."""
        return Buckets(tuple((bound, 0) for bound in self._bounds), 0.0)
