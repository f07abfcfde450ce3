"""Dynamic weights: a deployment's static weight times a score from what traffic and probes see.

score = mean(latency_score, error_score) * pressure, where
  latency_score = max(0, 1 - avg_latency_s / latency_scale_s)
  error_score   = max(0, 1 - error_rate * error_rate_scale)
  pressure      = how far saturation checks (KV cache, queue, GPU memory) are past their limit,
                  1.0 when none is.
The issue's formula is the floor; pressure is what makes "degrade before eject" real.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from litellm_failover.providers.base import CheckResult, Severity
from litellm_failover.settings import WeightSettings


@dataclass(slots=True)
class TrafficStats:
    """Latency EWMA and a time-windowed error rate from real requests."""

    window_s: float
    alpha: float
    latency_ewma_s: float | None = None
    last_latency_at: float = 0.0
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    max_samples: int = 2048

    def record(self, now: float, ok: bool, latency_s: float | None = None) -> None:
        self.outcomes.append((now, ok))
        if len(self.outcomes) > self.max_samples:
            self.outcomes.popleft()
        if latency_s is not None:
            previous = self.latency_ewma_s
            self.latency_ewma_s = (
                latency_s if previous is None else previous + self.alpha * (latency_s - previous)
            )
            self.last_latency_at = now

    def error_rate(self, now: float) -> float:
        self._expire(now)
        if not self.outcomes:
            return 0.0
        errors = sum(1 for _, ok in self.outcomes if not ok)
        return errors / len(self.outcomes)

    def latency(self, now: float) -> float | None:
        """Average latency, forgotten after a quiet window so a node that got no traffic while
        it was slow is not held at a zero weight forever."""
        if self.latency_ewma_s is None or now - self.last_latency_at > self.window_s:
            return None
        return self.latency_ewma_s

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        while self.outcomes and self.outcomes[0][0] < cutoff:
            self.outcomes.popleft()


def pressure_factor(checks: dict[str, CheckResult], limits: dict[str, float]) -> float:
    """1.0 when no saturation check fails; shrinks with how far past its limit a check is.

    A ratio in [0, 1] (KV cache, GPU memory) scales by the headroom left relative to the limit's
    headroom; a count (queue depth) by limit / value. The worst check wins.
    """
    factor = 1.0
    for check in checks.values():
        if check.ok or check.severity is not Severity.DEGRADE or check.value is None:
            continue
        limit = limits.get(check.name)
        if limit is None:
            factor = min(factor, 0.5)
            continue
        if limit <= 1.0 and check.value <= 1.0:
            headroom = max(0.0, 1.0 - check.value)
            factor = min(factor, headroom / max(1e-9, 1.0 - limit))
        elif check.value > 0:
            factor = min(factor, limit / check.value)
    return max(0.0, min(1.0, factor))


def score(stats: TrafficStats, now: float, settings: WeightSettings, pressure: float) -> float:
    latency = stats.latency(now)
    latency_score = 1.0 if latency is None else max(0.0, 1.0 - latency / settings.latency_scale_s)
    error_score = max(0.0, 1.0 - stats.error_rate(now) * settings.error_rate_scale)
    return (latency_score + error_score) / 2.0 * pressure
