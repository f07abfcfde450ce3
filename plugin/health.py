"""The per-deployment health state machine: healthy, degraded, unhealthy, recovering.

Two kinds of evidence feed it. Active probe rounds move a deployment with hysteresis (N failed
rounds in a row to go down, M good ones to come up); passive outcomes from real traffic eject it
through the outlier tracker. Recovery always passes through ``recovering`` and needs M good probe
rounds after any ejection time has run out: a timer alone never brings a node back, except for a
deployment whose probes are switched off, where the timer is all there is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.outlier import Outcome, OutlierTracker
from litellm_failover.providers.base import CheckResult, ProbeReport, Severity
from litellm_failover.scoring import TrafficStats, pressure_factor, score
from litellm_failover.settings import FailoverSettings


class HealthState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # saturated: weight lowered, still routed
    UNHEALTHY = "unhealthy"  # ejected: not routed (except in panic mode)
    RECOVERING = "recovering"  # passing probes again, not yet trusted

    @property
    def routable(self) -> bool:
        return self in (HealthState.HEALTHY, HealthState.DEGRADED)


@dataclass(frozen=True, slots=True)
class Transition:
    deployment_id: str
    group: str
    from_state: HealthState
    to_state: HealthState
    reason: str
    source: str  # "probe" | "traffic" | "timer" | "fleet" (decided by another replica)
    details: dict[str, Any] = field(default_factory=dict)


def _describe(checks: tuple[CheckResult, ...]) -> str:
    return "; ".join(f"{c.name}: {c.reason}" for c in checks)


class DeploymentHealth:
    """Mutable health of one deployment. Only the plugin's event loop touches it."""

    def __init__(self, spec: DeploymentSpec, settings: FailoverSettings, *, probed: bool) -> None:
        self.spec = spec
        self.settings = settings
        self.probed = probed
        self.state = HealthState.HEALTHY
        self.reason = (
            "no probe yet: assumed healthy" if probed else "probes disabled: traffic decides its health"
        )
        self.checks: dict[str, CheckResult] = {}
        self.probe_failures = 0
        self.probe_successes = 0
        self.last_probe_latency_s: float | None = None
        self.outlier = OutlierTracker(settings.outlier)
        self.ejected_by: str | None = None  # the replica whose ejection holds it out (fleets)
        self.traffic = TrafficStats(
            window_s=settings.outlier.error_window_s, alpha=settings.weights.latency_ewma_alpha
        )
        self._limits = {
            "kv_cache": spec.health.max_kv_cache_usage,
            "gpu_memory": spec.health.max_gpu_memory_ratio,
            "queue_depth": spec.health.max_queue_waiting,
        }

    def respecify(self, spec: DeploymentSpec) -> None:
        """The same node with a new weight or tier (``membership.same_target``): its health so
        far still holds."""
        self.spec = spec
        self._limits = {
            "kv_cache": spec.health.max_kv_cache_usage,
            "gpu_memory": spec.health.max_gpu_memory_ratio,
            "queue_depth": spec.health.max_queue_waiting,
        }

    # -- evidence -------------------------------------------------------------------------

    def apply_probe(self, report: ProbeReport, now: float) -> Transition | None:
        self.checks = {c.name: c for c in report.checks}
        self.last_probe_latency_s = report.latency_s
        hard = report.failed
        if hard:
            self.probe_successes = 0
            self.probe_failures += 1
            reason = _describe(hard)
            if self.state is HealthState.RECOVERING:
                return self._move(HealthState.UNHEALTHY, reason, "probe")
            if self.state.routable and self.probe_failures >= self.spec.health.unhealthy_threshold:
                return self._move(
                    HealthState.UNHEALTHY, f"{self.probe_failures} failed probe rounds: {reason}", "probe"
                )
            return None  # already out: the reason stays why it was ejected; checks show the rest

        self.probe_failures = 0
        if self.state is HealthState.UNHEALTHY and not self.outlier.ejection_over(now):
            self.probe_successes = 0  # half-open rounds only count once the ejection time is over
            return None
        self.probe_successes += 1
        if self.state is HealthState.UNHEALTHY:
            if self.probe_successes >= self.spec.health.healthy_threshold:
                return self._move(self._up_state(report), "probes pass again", "probe")
            return self._move(HealthState.RECOVERING, "probe passed; waiting for more", "probe")
        if self.state is HealthState.RECOVERING:
            if self.probe_successes >= self.spec.health.healthy_threshold:
                return self._move(
                    self._up_state(report), f"{self.probe_successes} good probe rounds in a row", "probe"
                )
            return None
        target = self._up_state(report)
        if target is not self.state:
            reason = _describe(report.degraded) if report.degraded else "saturation cleared"
            return self._move(target, reason, "probe")
        self.reason = _describe(report.degraded) if report.degraded else "all probe checks pass"
        return None

    def record_failure(self, outcome: Outcome, now: float) -> Transition | None:
        if outcome.counts_as_error:
            self.traffic.record(now, ok=False)
        if self.state is HealthState.UNHEALTHY:
            return None
        ejection = self.outlier.record_failure(outcome, now)
        if ejection is None and self.state is HealthState.RECOVERING and outcome.counts_toward_ejection:
            ejection = self.outlier.eject(now, f"{outcome.value} while recovering")
        if ejection is None:
            return None
        return self._move(
            HealthState.UNHEALTHY,
            ejection,
            "traffic",
            outcome=outcome.value,
            ejection_count=self.outlier.ejection_count,
        )

    def record_success(self, latency_s: float | None, now: float) -> None:
        self.outlier.record_success()
        self.traffic.record(now, ok=True, latency_s=latency_s)

    def tick(self, now: float) -> Transition | None:
        """Timer-driven recovery, only for deployments nobody probes."""
        if not self.probed and self.state is HealthState.UNHEALTHY and self.outlier.ejection_over(now):
            return self._move(HealthState.HEALTHY, "ejection time over (probes disabled)", "timer")
        return None

    def force_eject(self, reason: str, source: str, now: float, **details: Any) -> Transition | None:
        """Eject on a decision made outside this machine (a failback ramp aborted on errors).
        Counted as an ejection, so a node that keeps failing its ramps stays out longer."""
        if not self.state.routable:
            return None
        ejection = self.outlier.eject(now, reason)
        return self._move(
            HealthState.UNHEALTHY, ejection, source, ejection_count=self.outlier.ejection_count, **details
        )

    # -- fleet: what another replica decided -----------------------------------------------

    def remote_eject(self, origin: str, reason: str, remaining_s: float, now: float) -> Transition | None:
        """Another replica ejected it: out here too, for the time its ejection has left; then this
        replica's own half-open probes decide, as after a local ejection. Not counted as a local
        ejection (flap damping follows what this replica saw)."""
        if self.state is HealthState.UNHEALTHY and self.ejected_by is None:
            return None  # out on this replica's own evidence: its own ejection stands as it is
        self.outlier.ejected_until = max(self.outlier.ejected_until, now + remaining_s)
        if self.state is HealthState.UNHEALTHY:
            return None  # already out by a remote ejection: only its time was extended
        transition = self._move(
            HealthState.UNHEALTHY,
            f"ejected by {origin}: {reason}",
            "fleet",
            origin_instance=origin,
            remaining_s=round(remaining_s, 3),
        )
        self.ejected_by = origin
        return transition

    def remote_recover(self, origin: str, reason: str, now: float) -> Transition | None:
        """Another replica saw it recover: lift a remote ejection only, never a local one, and
        never while this replica's own latest probe fails."""
        if self.ejected_by is None or self.state.routable:
            return None
        if any(not c.ok and c.severity is Severity.FAIL for c in self.checks.values()):
            return None
        self.outlier.ejected_until = min(self.outlier.ejected_until, now)
        degraded = any(not c.ok for c in self.checks.values())
        return self._move(
            HealthState.DEGRADED if degraded else HealthState.HEALTHY,
            f"recovered on {origin}: {reason}",
            "fleet",
            origin_instance=origin,
        )

    # -- derived --------------------------------------------------------------------------

    def pressure(self) -> float:
        return pressure_factor(self.checks, self._limits)

    def effective_weight(self, now: float) -> float:
        return self.spec.weight * score(self.traffic, now, self.settings.weights, self.pressure())

    def _up_state(self, report: ProbeReport) -> HealthState:
        return HealthState.DEGRADED if report.degraded else HealthState.HEALTHY

    def _move(self, to: HealthState, reason: str, source: str, **details: Any) -> Transition:
        previous = self.state
        self.state = to
        self.reason = reason
        if to is not HealthState.RECOVERING:
            self.ejected_by = None  # back in, or out on this replica's own evidence
        if to is HealthState.UNHEALTHY:
            self.probe_successes = 0
        if not to.routable:
            self.probe_failures = 0
        return Transition(
            deployment_id=self.spec.deployment_id,
            group=self.spec.group,
            from_state=previous,
            to_state=to,
            reason=reason,
            source=source,
            details=details,
        )
