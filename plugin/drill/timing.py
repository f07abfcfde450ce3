"""A scenario's phase lengths, derived from the plugin settings the drill runs with.

The phase constants in ``scenario_run`` (6 s of fault, at most 20 s of recovery, times
``--duration-scale``) were sized for the ``tuned`` plugin settings: sub-second probes, a 2 s
hold-down and 2 s ramp steps. Under other settings (``--settings default``: 1 s probes that fail
after 2 s, a 30 s hold-down, 30 s ramp steps, 5 s ejections) a fault takes longer to detect and a
failback far longer to finish, so a fixed plan would end the recovery before the ramp could be
seen and judge the run on a failback that had not happened yet. So each phase is the tuned
length plus however much longer the settings in use need than the tuned ones at the same scale:
the tuned plan is unchanged, and the plugin's own settings are read through its settings model, so
the plan follows its defaults wherever they change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Phase lengths at --duration-scale 1 (seconds), sized for the tuned settings.
WARM_S = 3.0
FAULT_S = 6.0
RECOVERY_MIN_S = 3.0
RECOVERY_MAX_S = 20.0


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """How long each phase may run, and the failback ramp the recovery waits for and judges."""

    warm_s: float
    fault_s: float
    recovery_min_s: float
    recovery_max_s: float
    ramp_steps: tuple[float, ...]
    step_interval_s: float

    @property
    def ramp_span_s(self) -> float:
        """From the first ramp step to the last: a ramp cannot be judged whole before this."""
        return (len(self.ramp_steps) - 1) * self.step_interval_s


def detection_s(settings: Any) -> float:
    """The worst time the probes take to eject a node that stopped answering: a round starts up to
    ``interval_s`` after the fault, each failed round waits ``max_probe_latency_s``, and the
    ``unhealthy_threshold`` rounds are ``failure_interval_s`` apart."""
    health = settings.health
    rounds = health.unhealthy_threshold
    return health.interval_s + rounds * health.max_probe_latency_s + (rounds - 1) * health.failure_interval_s


def failback_s(settings: Any) -> float:
    """The longest the recovery may need from the restore until the ramp is at its last step: one
    repeated ejection still running (``2 x base_ejection_s``: flap damping doubles it), the
    passing probes that bring the node back, the hold-down, and every step but the last."""
    failback = settings.failback
    back = settings.health.healthy_threshold * settings.health.interval_s
    steps = (len(failback.ramp_steps) - 1) * failback.step_interval_s
    return 2 * settings.outlier.base_ejection_s + back + failback.hold_down_s + steps


def phase_plan(profile: str, failover_settings: Mapping[str, Any] | None, scale: float) -> PhasePlan:
    """The plan for ``profile`` whose proxy config has ``failover_settings`` (None: plain)."""
    from litellm_failover.drill.profiles import RAMP_STEPS, SETTINGS, STEP_INTERVAL_S
    from litellm_failover.drill.profiles import failover_settings as profile_settings
    from litellm_failover.settings.failover import parse_settings

    base = PhasePlan(
        warm_s=WARM_S * scale,
        fault_s=FAULT_S * scale,
        recovery_min_s=RECOVERY_MIN_S * scale,
        recovery_max_s=RECOVERY_MAX_S * scale,
        ramp_steps=tuple(RAMP_STEPS),
        step_interval_s=STEP_INTERVAL_S * scale,
    )
    if profile != "plugin":
        return base  # LiteLLM alone has no probes or ramp: the plain plan is the tuned one
    used = parse_settings(_without_database(failover_settings))
    tuned = parse_settings(_without_database(profile_settings(SETTINGS[0], workdir=Path("."), scale=scale)))
    return PhasePlan(
        warm_s=base.warm_s,
        fault_s=base.fault_s + max(0.0, detection_s(used) - detection_s(tuned)),
        recovery_min_s=base.recovery_min_s,
        recovery_max_s=base.recovery_max_s + max(0.0, failback_s(used) - failback_s(tuned)),
        ramp_steps=tuple(float(step) for step in used.failback.ramp_steps),
        step_interval_s=used.failback.step_interval_s,
    )


def _without_database(block: Mapping[str, Any] | None) -> dict[str, Any]:
    """The timing needs no database; leaving it out keeps parsing free of the URL's checks."""
    return {key: value for key, value in (block or {}).items() if key != "database_url"}


def plan_summary(plan: PhasePlan) -> dict[str, Any]:
    """The plan as the report's ``options.phases`` shows it (seconds, rounded)."""
    return {
        "warm_s": round(plan.warm_s, 3),
        "fault_s": round(plan.fault_s, 3),
        "recovery_min_s": round(plan.recovery_min_s, 3),
        "recovery_max_s": round(plan.recovery_max_s, 3),
        "ramp_steps": list(plan.ramp_steps),
        "step_interval_s": round(plan.step_interval_s, 3),
    }
