"""Ramps: traffic brought back, or moved, in steps (Envoy's slow start, Argo-style canaries).

One ``Stepper`` drives each ramp: a failback ramp of a group's primary tier, the slow start of a
deployment recovering inside the serving tier, and a canary shift. It counts the failed attempts
of the current step, since a ramp that keeps failing must stop rather than reach 100 %.

All of them are immutable values: a change is a new value put in the group's ``GroupState``.

A ``Hold`` keeps a recovered primary out of rotation until it has been routable without a break
for ``failback.hold_down_s`` (auto) or until ``failback(group)`` (manual). A ``Transfer`` is a
group-level ramp: ``share`` of the group's new requests go to its target, the rest elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from litellm_failover.plan import Split


def _no_errors() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Stepper:
    """Where a ramp is: a value, replaced by ``advanced`` and ``with_error``, never changed."""

    steps: tuple[float, ...]
    interval_s: float
    step_started_at: float
    started_at: float
    index: int = 0
    errors: int = 0  # failed attempts on the ramping deployments during this step
    errors_by: Mapping[str, int] = field(default_factory=_no_errors)

    @property
    def percent(self) -> float:
        return self.steps[self.index]

    @property
    def share(self) -> float:
        return self.percent / 100.0

    @property
    def last(self) -> bool:
        return self.index >= len(self.steps) - 1

    @property
    def next_at(self) -> float:
        return self.step_started_at + self.interval_s

    def due(self, now: float) -> bool:
        return not self.last and now >= self.next_at

    def advanced(self, now: float) -> Stepper:
        """The next step, started ``now``, with no errors counted yet."""
        return replace(self, index=self.index + 1, step_started_at=now, errors=0, errors_by=_no_errors())

    def with_error(self, deployment_id: str) -> Stepper:
        by = dict(self.errors_by)
        by[deployment_id] = by.get(deployment_id, 0) + 1
        return replace(self, errors=self.errors + 1, errors_by=MappingProxyType(by))

    def describe(self, now: float) -> dict[str, object]:
        return {
            "step": self.index + 1,
            "steps": list(self.steps),
            "percent": self.percent,
            "interval_s": self.interval_s,
            "next_step_in_s": None if self.last else round(max(0.0, self.next_at - now), 3),
            "errors_this_step": self.errors,
            "running_for_s": round(now - self.started_at, 3),
        }


@dataclass(frozen=True, slots=True)
class Hold:
    """A recovered primary waiting: ``until`` None means until ``failback(group)`` (manual)."""

    deployment_id: str
    group: str
    tier: int
    since: float
    until: float | None

    def describe(self, now: float) -> dict[str, object]:
        return {
            "deployment_id": self.deployment_id,
            "group": self.group,
            "tier": self.tier,
            "held_for_s": round(now - self.since, 3),
            "mode": "manual" if self.until is None else "auto",
            "ramps_in_s": None if self.until is None else round(max(0.0, self.until - now), 3),
        }


@dataclass(frozen=True, slots=True)
class Transfer:
    """A group-level ramp: a failback (the primary tier back) or a canary shift (to a target)."""

    kind: Literal["failback", "shift"]
    group: str
    target: frozenset[str]  # deployment ids the split sends its share to (admitted ones only)
    label: str  # "tier:1", "s1": what the operator named, or the tier a failback brings back
    stepper: Stepper
    via: str
    base: frozenset[str] | None = None  # where the rest goes first (the target of a completed shift)
    previous: frozenset[str] | None = None  # a completed shift's target, restored on a rollback
    previous_label: str | None = None

    def split(self) -> Split:
        return Split(self.target, self.stepper.share, self.base)

    def stepped(self, stepper: Stepper) -> Transfer:
        return replace(self, stepper=stepper)

    def describe(self, now: float) -> dict[str, object]:
        return {
            "group": self.group,
            "kind": self.kind,
            "to": self.label,
            "deployments": sorted(self.target),
            "via": self.via,
            **self.stepper.describe(now),
        }


@dataclass(frozen=True, slots=True)
class Shifted:
    """A completed shift: its target keeps all of the group's traffic until the next shift or a
    failback (``failback(group)`` ramps the natural serving tier back)."""

    target: frozenset[str]
    label: str
    since: float
    via: str

    def describe(self, group: str, now: float) -> dict[str, object]:
        return {
            "state": "completed",
            "group": group,
            "to": self.label,
            "deployments": sorted(self.target),
            "percent": 100.0,
            "since_s": round(now - self.since, 3),
            "via": self.via,
        }
