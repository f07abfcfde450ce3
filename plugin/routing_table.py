"""The routing table of one model group: an immutable snapshot the hot path reads.

A table is built from the group's health records, and the traffic-switching plan (drains, held
primaries, slow-start factors, a failback ramp's or a canary shift's split), whenever one of them
changes, and is swapped in whole; ``pick`` does no I/O and takes no lock. Strategies:

- ``primary-standby``: tiers by ``litellm_params.order``; the best tier with a routable member
  takes all traffic, inside it ``in_tier`` (weighted or round-robin) chooses.
- ``round-robin`` / ``weighted``: one flat tier of every routable member.

Switching (see ``litellm_failover.switching``): a draining member gets no new requests at all; a
held member (a recovered primary in its hold-down, or waiting for a manual failback) none while
anything else can serve; a slow-starting member's weight is multiplied by its ramp factor; and a
split sends ``share`` of the group's new requests to its target members (a failback ramp's
primary tier, a shift's target) before the normal tiers see the rest. A pick stays one random
draw and one binary search.

When no member is routable and panic mode is on, the table routes to every member by static
weight rather than refuse the whole group. Drained members stay out even then: a drain is an
operator's decision, and the node may be down for maintenance.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from litellm_failover.health import DeploymentHealth
from litellm_failover.picker import Picker, make_picker
from litellm_failover.plan import EMPTY_PLAN, GroupPlan


@dataclass(frozen=True, slots=True)
class Tier:
    order: int
    picker: Picker


@dataclass(frozen=True, slots=True)
class SplitTier:
    """The members a split sends ``share`` of new requests to."""

    tier: Tier
    share: float


def _no_ramp() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RoutingTable:
    group: str
    strategy: str
    in_tier: str
    tiers: tuple[Tier, ...]
    panic: bool
    weights: dict[str, float]
    split: SplitTier | None = None
    serving: tuple[str, ...] = ()  # the members that get new requests now (see ``_serving``)
    active_tier: int | None = None
    draining: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()
    ramp: Mapping[str, float] = field(default_factory=_no_ramp)  # slow-start factors below 1

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The deployment for this attempt, skipping ones that already failed for the request.

        A tier whose members are all excluded hands over to the next: a request's retry falls
        through to the standby tier rather than back to the primary that just failed it. A
        split's target is tried first for its share of requests, and last for the others.
        """
        split = self.split
        tried_split = False
        if split is not None and (split.share >= 1.0 or random.random() < split.share):
            chosen = split.tier.picker.pick(exclude)
            if chosen is not None:
                return chosen
            tried_split = True
        for tier in self.tiers:
            chosen = tier.picker.pick(exclude)
            if chosen is not None:
                return chosen
        if split is not None and not tried_split:
            return split.tier.picker.pick(exclude)
        return None


def build_table(
    group: str,
    members: Sequence[DeploymentHealth],
    strategy: str,
    in_tier: str,
    now: float,
    *,
    panic_mode: bool,
    plan: GroupPlan | None = None,
) -> RoutingTable:
    plan = plan or EMPTY_PLAN
    candidates = [h for h in members if h.spec.deployment_id not in plan.draining]
    routable = [h for h in candidates if h.state.routable]
    admitted = [h for h in routable if h.spec.deployment_id not in plan.held]
    held = frozenset(h.spec.deployment_id for h in routable if h.spec.deployment_id in plan.held)
    if not admitted:
        admitted, held = routable, frozenset()  # a held primary serves at once if nothing else can
    panic = not admitted and panic_mode and bool(candidates)
    ramp: dict[str, float] = {}
    if panic:
        # Fail open: every member by its static weight, tiers kept so a standby still comes last.
        weights = {h.spec.deployment_id: h.spec.weight for h in candidates}
        admitted = list(candidates)
    else:
        ids = {h.spec.deployment_id for h in admitted}
        ramp = {i: f for i, f in plan.ramp.items() if i in ids and f < 1.0}
        weights = {
            h.spec.deployment_id: h.effective_weight(now) * ramp.get(h.spec.deployment_id, 1.0)
            for h in admitted
        }
    split = None if panic else plan.split
    target = [h for h in admitted if split is not None and h.spec.deployment_id in split.ids]
    split_tier: SplitTier | None = None
    if split is not None and target and split.share > 0.0:
        rest = [h for h in admitted if h.spec.deployment_id not in split.ids]
        if split.base is not None:
            first = [h for h in rest if h.spec.deployment_id in split.base]
            tiers = _tiers(strategy, in_tier, first, weights, ramp)
            tiers += _tiers(strategy, in_tier, [h for h in rest if h not in first], weights, ramp)
        else:
            tiers = _tiers(strategy, in_tier, rest, weights, ramp)
        order = min(h.spec.tier for h in target) if strategy == "primary-standby" else 0
        kind = "weighted" if strategy == "primary-standby" else _flat_kind(strategy)
        split_tier = SplitTier(Tier(order, _picker(kind, target, weights, ramp)), min(1.0, split.share))
    else:
        tiers = _tiers(strategy, in_tier, admitted, weights, ramp)
    serving, active = _serving(tiers, split_tier)
    return RoutingTable(
        group=group,
        strategy=strategy,
        in_tier=in_tier,
        tiers=tiers,
        panic=panic,
        weights=weights,
        split=split_tier,
        serving=serving,
        active_tier=active,
        draining=plan.draining,
        held=held,
        ramp=MappingProxyType(ramp),
    )


def _flat_kind(strategy: str) -> str:
    return "round-robin" if strategy == "round-robin" else "weighted"


def _tiers(
    strategy: str,
    in_tier: str,
    members: Sequence[DeploymentHealth],
    weights: dict[str, float],
    ramp: Mapping[str, float],
) -> tuple[Tier, ...]:
    if not members:
        return ()
    if strategy != "primary-standby":
        return (Tier(0, _picker(_flat_kind(strategy), members, weights, ramp)),)
    orders = sorted({h.spec.tier for h in members})
    return tuple(
        Tier(order, _picker(in_tier, [h for h in members if h.spec.tier == order], weights, ramp))
        for order in orders
    )


def _picker(
    kind: str, members: Sequence[DeploymentHealth], weights: dict[str, float], ramp: Mapping[str, float]
) -> Picker:
    ids = [h.spec.deployment_id for h in members]
    if kind == "round-robin" and any(i in ramp for i in ids):
        # Round-robin has no weights to scale: while a member slow-starts, draw in proportion to
        # the ramp factors alone (1.0 for the others), which is round-robin's share, ramped.
        return make_picker("weighted", ids, [ramp.get(i, 1.0) for i in ids])
    return make_picker(kind, ids, [weights[i] for i in ids])


def _serving(tiers: tuple[Tier, ...], split: SplitTier | None) -> tuple[tuple[str, ...], int | None]:
    """Who gets new requests now, and the tier that serves: the first tier, plus a split's
    target while it ramps (all of it once the split takes every request)."""
    if split is None:
        return (tiers[0].picker.ids, tiers[0].order) if tiers else ((), None)
    if split.share >= 1.0 or not tiers:
        return split.tier.picker.ids, split.tier.order
    base = tiers[0].picker.ids
    return base + tuple(i for i in split.tier.picker.ids if i not in base), tiers[0].order
