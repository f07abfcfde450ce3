"""``GroupState``: everything traffic switching holds for one model group, as one immutable value.

A group is in one mode at a time (``mode``): ``normal``, ``held`` (a recovered primary waits for
its hold-down or a manual failback), ``failback ramp`` (the primary tier ramps back), ``shift`` (a
canary shift runs), ``shifted`` (a completed shift keeps its target) or ``planned failover`` (the
primary tier drained by ``failover(group)``). Alongside the mode, the deployments that slow-start
inside the serving tier. Every change is a new ``GroupState`` (``dataclasses.replace``); nothing
in one is ever mutated, so ``plan_of`` is a pure function of it and of the group's drains.

Drains live in the ``DrainBook`` (their in-flight phases are per deployment, not per group), and
reach the table only through the plan's ``draining``: one source of truth for drain membership.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from litellm_failover.plan import EMPTY_PLAN, GroupPlan, Split
from litellm_failover.switching.ramp import Hold, Shifted, Stepper, Transfer

Mode = Literal["normal", "held", "failback ramp", "shift", "shifted", "planned failover"]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PlannedFailover:
    """``failover(group)``: the primary tier drained, the standby serving until ``failback``."""

    tier: int
    drained: frozenset[str]  # members drained by it and not undrained since
    to_tier: int | None
    since: float
    via: str

    def describe(self, group: str, now: float) -> dict[str, Any]:
        return {
            "group": group,
            "from_tier": self.tier,
            "to_tier": self.to_tier,
            "drained": sorted(self.drained),
            "since_s": round(now - self.since, 3),
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class GroupState:
    holds: Mapping[str, Hold] = field(default_factory=_empty)  # recovered primaries held back
    slow: Mapping[str, Stepper] = field(default_factory=_empty)  # slow starts inside their tier
    transfer: Transfer | None = None  # a failback ramp or a running shift
    shifted: Shifted | None = None  # a completed shift holding its target
    planned: PlannedFailover | None = None

    @property
    def mode(self) -> Mode:
        if self.planned is not None:
            return "planned failover"
        if self.transfer is not None:
            return "failback ramp" if self.transfer.kind == "failback" else "shift"
        if self.shifted is not None:
            return "shifted"
        return "held" if self.holds else "normal"

    @property
    def idle(self) -> bool:
        """Nothing to keep: the group routes as if switching did not exist."""
        return self.mode == "normal" and not self.slow

    def with_hold(self, hold: Hold) -> GroupState:
        return replace(self, holds=_put(self.holds, hold.deployment_id, hold))

    def with_slow(self, deployment_id: str, stepper: Stepper) -> GroupState:
        return replace(self, slow=_put(self.slow, deployment_id, stepper))

    def without(self, *deployment_ids: str) -> GroupState:
        """Neither held nor slow-starting any more (drained, back, or named by the operator)."""
        if not any(i in self.holds or i in self.slow for i in deployment_ids):
            return self
        return replace(self, holds=_drop(self.holds, deployment_ids), slow=_drop(self.slow, deployment_ids))

    def without_holds(self, deployment_ids: Collection[str]) -> GroupState:
        return replace(self, holds=_drop(self.holds, deployment_ids))

    def without_slow(self, deployment_ids: Collection[str]) -> GroupState:
        return replace(self, slow=_drop(self.slow, deployment_ids))


IDLE = GroupState()


def plan_of(state: GroupState, draining: frozenset[str]) -> GroupPlan:
    """What the group's next routing table must respect: a pure function of its state."""
    held = frozenset(state.holds)
    ramp = {i: s.share for i, s in state.slow.items()}
    if state.transfer is not None:
        split: Split | None = state.transfer.split()
    elif state.shifted is not None:
        split = Split(state.shifted.target, 1.0)
    else:
        split = None
    if not (draining or held or ramp or split):
        return EMPTY_PLAN
    return GroupPlan(draining=draining, held=held, ramp=MappingProxyType(ramp), split=split)


def _put(mapping: Mapping[str, Any], key: str, value: Any) -> Mapping[str, Any]:
    out = dict(mapping)
    out[key] = value
    return MappingProxyType(out)


def _drop(mapping: Mapping[str, Any], keys: Any) -> Mapping[str, Any]:
    return MappingProxyType({k: v for k, v in mapping.items() if k not in keys})


__all__ = ["IDLE", "GroupState", "Mode", "PlannedFailover", "plan_of"]
