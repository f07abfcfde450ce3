"""Passive outlier detection from real traffic, after Envoy's outlier detector.

Real traffic is the fastest probe. A refused connection ejects at once; 5xx, timeouts and cut
streams count toward a consecutive-error threshold; each ejection lasts longer than the last
(flap damping), and the count decays after a long healthy spell. Ejection only opens the door
to recovery: the active probe's half-open rounds, not the timer, bring a deployment back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from litellm_failover.settings import OutlierSettings


class Outcome(StrEnum):
    """What one request attempt told us about a deployment."""

    CONNECT_ERROR = "connect_error"  # refused / reset before any answer: the node is not there
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"
    STREAM_CUT = "stream_cut"  # a stream that broke after it started
    OVERLOADED = "overloaded"  # 429: counts toward the error rate, never ejects
    CLIENT_ERROR = "client_error"  # 4xx: the request's fault, not the deployment's

    @property
    def counts_toward_ejection(self) -> bool:
        return self in (Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.STREAM_CUT, Outcome.CONNECT_ERROR)

    @property
    def counts_as_error(self) -> bool:
        return self is not Outcome.CLIENT_ERROR


@dataclass(slots=True)
class OutlierTracker:
    """Consecutive errors and ejection backoff for one deployment."""

    settings: OutlierSettings
    consecutive_errors: int = 0
    ejection_count: int = 0
    ejected_until: float = 0.0
    last_ejected_at: float | None = None

    def record_success(self) -> None:
        self.consecutive_errors = 0

    def record_failure(self, outcome: Outcome, now: float) -> str | None:
        """Count a failed attempt; return the ejection reason if it ejects now, else None."""
        if not outcome.counts_toward_ejection:
            return None
        if outcome is Outcome.CONNECT_ERROR and self.settings.eject_on_connect_error:
            return self.eject(now, "connection refused by deployment")
        self.consecutive_errors += 1
        if self.consecutive_errors >= self.settings.consecutive_errors:
            return self.eject(
                now, f"{self.consecutive_errors} consecutive {outcome.value} errors from traffic"
            )
        return None

    def eject(self, now: float, reason: str) -> str:
        self._decay(now)
        self.ejection_count += 1
        duration = min(
            self.settings.base_ejection_s * 2 ** (self.ejection_count - 1), self.settings.max_ejection_s
        )
        self.ejected_until = now + duration
        self.last_ejected_at = now
        self.consecutive_errors = 0
        return f"{reason}; ejected for {duration:g}s (ejection #{self.ejection_count})"

    def ejection_over(self, now: float) -> bool:
        return now >= self.ejected_until

    def _decay(self, now: float) -> None:
        """Forget old ejections after a long quiet spell so one flap years ago costs nothing."""
        if self.last_ejected_at is not None and now - self.last_ejected_at > self.settings.ejection_decay_s:
            self.ejection_count = 0
