"""``Board``: the switching state of every group, and what decisions read about the core.

One ``GroupState`` per group (absent: idle), the ``DrainBook``, and the outbox (``Emitter``) the
decisions queue their events, ejections and rebuilds in. The modules that decide (``moves``,
``verbs``, ``timers``, the controller) all take a ``Board``; none of them calls the core. What
they read of it comes from its published snapshot: membership, tiers, health, the current table.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.plan import GroupPlan
from litellm_failover.routing_table import RoutingTable
from litellm_failover.settings import FailoverSettings
from litellm_failover.switching.drain import DrainBook
from litellm_failover.switching.errors import OperatorError
from litellm_failover.switching.events import Emitter
from litellm_failover.switching.ports import CoreView, InFlightView
from litellm_failover.switching.ramp import Stepper
from litellm_failover.switching.state import IDLE, GroupState, plan_of


class Board:
    def __init__(self, core: CoreView, settings: FailoverSettings, inflight: InFlightView) -> None:
        self.core = core
        self.settings = settings
        self.clock = core.clock
        self.inflight = inflight
        self.emit = Emitter()
        self.drains = DrainBook(inflight, self.emit)
        self.groups: dict[str, GroupState] = {}
        # Read by a metrics scrape in another thread: replaced whole, never mutated.
        self.ramp_view: dict[str, float] = {}
        self.changed = asyncio.Event()  # deadlines may have moved: the timer driver wakes

    # -- the state ------------------------------------------------------------------------

    def state(self, group: str) -> GroupState:
        return self.groups.get(group, IDLE)

    def put(self, group: str, state: GroupState) -> None:
        if state.idle:
            self.groups.pop(group, None)
        else:
            self.groups[group] = state

    def states(self) -> list[tuple[str, GroupState]]:
        return sorted(self.groups.items())

    def plan(self, group: str) -> GroupPlan:
        return plan_of(self.state(group), self.drains.in_group(group))

    def held(self, deployment_id: str) -> bool:
        return deployment_id in self.state(self.spec(deployment_id).group).holds

    def refresh(self) -> None:
        """The views other threads read (rebuilt whole, then swapped in), and a wake-up for the
        timer driver: a change may have moved the next deadline."""
        ramp = {i: s.share for st in self.groups.values() for i, s in st.slow.items()}
        for st in self.groups.values():
            transfer = st.transfer
            if transfer is not None and transfer.kind == "failback":
                ramp.update({i: transfer.stepper.share for i in transfer.target if self.admitted(i)})
        self.ramp_view = ramp
        self.changed.set()

    # -- what the core's snapshot says ----------------------------------------------------

    def members(self, group: str) -> tuple[str, ...]:
        return self.core.snapshot.groups[group]

    def table(self, group: str) -> RoutingTable:
        return self.core.snapshot.tables[group]

    def spec(self, deployment_id: str) -> DeploymentSpec:
        return self.core.snapshot.deployments[deployment_id].spec

    def routable(self, deployment_id: str) -> bool:
        return self.core.snapshot.deployments[deployment_id].routable

    def admitted(self, deployment_id: str) -> bool:
        return (
            self.routable(deployment_id) and deployment_id not in self.drains and not self.held(deployment_id)
        )

    def admitted_of(self, ids: frozenset[str]) -> list[str]:
        return [i for i in ids if self.admitted(i)]

    def serving_tier(self, table: RoutingTable) -> int | None:
        if table.panic or not table.serving:
            return None
        return min(self.spec(i).tier for i in table.serving)

    def natural(self, group: str) -> RoutingTable:
        """The group's table as it would be with no split (what serves it without a shift)."""
        return self.core.preview(group, replace(self.plan(group), split=None))

    def stepper(self, now: float) -> Stepper:
        failback = self.settings.failback
        return Stepper(tuple(failback.ramp_steps), failback.step_interval_s, now, now)

    # -- operator input -------------------------------------------------------------------

    def group_of(self, deployment_id: object) -> str:
        deployments = self.core.snapshot.deployments
        view = deployments.get(deployment_id) if isinstance(deployment_id, str) else None
        if view is None:
            raise OperatorError(
                f"unknown deployment {deployment_id!r} (known: {', '.join(sorted(deployments))})"
            )
        return view.group

    def require_group(self, group: object) -> None:
        groups = self.core.snapshot.groups
        if not isinstance(group, str) or group not in groups:
            raise OperatorError(f"unknown model group {group!r} (known: {', '.join(sorted(groups))})")


__all__ = ["Board"]
