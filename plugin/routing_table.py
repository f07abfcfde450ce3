"""The routing table of one model group: an immutable snapshot the hot path reads.

A table is built from the group's health records whenever a state or weight changes and is
swapped in whole; ``pick`` does no I/O and takes no lock. Strategies:

- ``primary-standby``: tiers by ``litellm_params.order``; the best tier with a routable member
  takes all traffic, inside it ``in_tier`` (weighted or round-robin) chooses.
- ``round-robin`` / ``weighted``: one flat tier of every routable member.

When no member is routable and panic mode is on, the table routes to every member by static
weight rather than refuse the whole group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from litellm_failover.health import DeploymentHealth
from litellm_failover.picker import Picker, make_picker


@dataclass(frozen=True, slots=True)
class Tier:
    order: int
    picker: Picker


@dataclass(frozen=True, slots=True)
class RoutingTable:
    group: str
    strategy: str
    in_tier: str
    tiers: tuple[Tier, ...]
    panic: bool
    weights: dict[str, float]

    @property
    def serving(self) -> tuple[str, ...]:
        """The members the group serves from right now (the active tier)."""
        return self.tiers[0].picker.ids if self.tiers else ()

    @property
    def active_tier(self) -> int | None:
        return self.tiers[0].order if self.tiers else None

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The deployment for this attempt, skipping ones that already failed for the request.

        A tier whose members are all excluded hands over to the next: a request's retry falls
        through to the standby tier rather than back to the primary that just failed it.
        """
        for tier in self.tiers:
            chosen = tier.picker.pick(exclude)
            if chosen is not None:
                return chosen
        return None


def build_table(
    group: str,
    members: Sequence[DeploymentHealth],
    strategy: str,
    in_tier: str,
    now: float,
    *,
    panic_mode: bool,
) -> RoutingTable:
    weights = {h.spec.deployment_id: h.effective_weight(now) for h in members if h.state.routable}
    routable = [h for h in members if h.state.routable]
    panic = not routable and panic_mode and bool(members)
    if panic:
        # Fail open: every member by its static weight, tiers kept so a standby still comes last.
        weights = {h.spec.deployment_id: h.spec.weight for h in members}
        routable = list(members)
    if strategy == "primary-standby":
        orders = sorted({h.spec.tier for h in routable})
        tiers = tuple(
            Tier(order, _picker(in_tier, [h for h in routable if h.spec.tier == order], weights))
            for order in orders
        )
    else:
        kind = "round-robin" if strategy == "round-robin" else "weighted"
        tiers = (Tier(0, _picker(kind, routable, weights)),) if routable else ()
    return RoutingTable(
        group=group, strategy=strategy, in_tier=in_tier, tiers=tiers, panic=panic, weights=weights
    )


def _picker(kind: str, members: Sequence[DeploymentHealth], weights: dict[str, float]) -> Picker:
    ids = [h.spec.deployment_id for h in members]
    return make_picker(kind, ids, [weights[i] for i in ids])
