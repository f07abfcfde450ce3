"""The failover core: health records in, routing tables and audit records out.

Everything that changes a deployment's health goes through ``FailoverCore``; each change rebuilds
that group's routing table and swaps it in, and each transition or failover becomes an event for
the store writer. It holds no I/O of its own: the prober feeds it probe reports, the LiteLLM
handler feeds it request outcomes, and ``EventSink`` takes what it decides.

Readers outside the core read ``snapshot`` (``litellm_failover.snapshot``), never the mutable
records: one frozen value, replaced whole with every table swap. A ``Planner`` (traffic
switching, wired by the plugin with ``attach_planner``) shapes each table with its ``GroupPlan``
and answers each health transition with ``Effects``; the core applies them (``apply``), so the
planner never calls back into the core while the core is calling it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from litellm_failover.actions import Announce, Effects, Eject, Rebuild
from litellm_failover.deployments import DeploymentSpec
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.health import DeploymentHealth, HealthState, Transition
from litellm_failover.membership import MembershipMixin
from litellm_failover.outlier import Outcome
from litellm_failover.plan import GroupPlan
from litellm_failover.providers.base import CheckResult, ProbeReport
from litellm_failover.records import DeploymentStateRow
from litellm_failover.routing_table import RoutingTable, build_table
from litellm_failover.settings import FailoverSettings
from litellm_failover.snapshot import CoreSnapshot, publish, status_of, table_weights

logger = logging.getLogger("litellm_failover")


class EventSink(Protocol):
    def submit_event(self, event: FailoverEvent) -> bool: ...

    def submit_state(self, row: DeploymentStateRow) -> None: ...


class Planner(Protocol):
    """Traffic switching (``litellm_failover.switching.SwitchingController``): what each table
    build must respect, and its reaction to a health transition (applied before the rebuild)."""

    def plan(self, group: str) -> GroupPlan: ...

    def on_transition(self, transition: Transition) -> Effects: ...


class FailoverCore(MembershipMixin):
    def __init__(
        self,
        settings: FailoverSettings,
        specs: Iterable[DeploymentSpec],
        *,
        instance_id: str,
        probed: Callable[[DeploymentSpec], bool],
        sink: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.sink = sink
        self.clock = clock
        self.health: dict[str, DeploymentHealth] = {}
        self.groups: dict[str, list[str]] = {}
        for spec in specs:
            self.health[spec.deployment_id] = DeploymentHealth(spec, settings, probed=probed(spec))
            self.groups.setdefault(spec.group, []).append(spec.deployment_id)
        self.tables: dict[str, RoutingTable] = {}
        self.recent_events: deque[FailoverEvent] = deque(maxlen=500)
        self.listeners: list[Callable[[FailoverEvent], None]] = []
        self.planner: Planner | None = None  # wired by the plugin (``attach_planner``)
        self._members = MappingProxyType({group: tuple(ids) for group, ids in self.groups.items()})
        now = self.clock()
        for group in self.groups:
            self.tables[group] = self._build(group, now)
        self.snapshot: CoreSnapshot = self._publish(None, self.health.values())
        for record in self.health.values():
            self._submit_state(record)

    # -- evidence in ----------------------------------------------------------------------

    def apply_probe(self, deployment_id: str, report: ProbeReport) -> None:
        record = self.health.get(deployment_id)
        if record is None:
            return  # removed while its round was in flight
        before = _verdicts(record.checks)
        transition = record.apply_probe(report, self.clock())
        if transition is not None:
            self._on_transition(transition)
            return
        # Checks and probe latency changed: readers see them now, not at the next refresh.
        self.snapshot = self._publish(self.snapshot, (record,))
        if before != _verdicts(record.checks):
            self._submit_state(record)  # a check's verdict changed without a transition

    def record_failure(
        self, deployment_id: str, outcome: Outcome, *, request_id: str | None = None, error: str = ""
    ) -> None:
        record = self.health.get(deployment_id)
        if record is None:
            return
        transition = record.record_failure(outcome, self.clock())
        if transition is not None:
            transition.details.update({"request_id": request_id, "error": error[:300]})
            self._on_transition(transition)

    def record_success(self, deployment_id: str, latency_s: float | None) -> None:
        record = self.health.get(deployment_id)
        if record is not None:
            record.record_success(latency_s, self.clock())

    def apply_remote_ejection(
        self, deployment_id: str, *, origin: str, reason: str, remaining_s: float
    ) -> bool:
        """Another replica ejected it (see ``DeploymentHealth.remote_eject``); True if it changed
        this replica's routing. The event says ``source: fleet`` and names the origin."""
        record = self.health.get(deployment_id)
        transition = record.remote_eject(origin, reason, remaining_s, self.clock()) if record else None
        if transition is None:
            return False
        self._on_transition(transition)
        return True

    def apply_remote_recovery(self, deployment_id: str, *, origin: str, reason: str) -> bool:
        record = self.health.get(deployment_id)
        transition = record.remote_recover(origin, reason, self.clock()) if record else None
        if transition is None:
            return False
        self._on_transition(transition)
        return True

    def tick(self) -> None:
        """Periodic upkeep: timer recoveries and fresh dynamic weights (latency, error rate)."""
        now = self.clock()
        for record in self.health.values():
            transition = record.tick(now)
            if transition is not None:
                self._on_transition(transition)
        old = dict(self.tables)
        for group in self.groups:
            self.tables[group] = self._build(group, now)
        # One publish for all: fresh measurements (latency, error rate, weight) in every view.
        weights = table_weights(self.tables.values())
        self.snapshot = self._publish(self.snapshot, self.health.values(), now=now, weights=weights)
        for group in self.groups:
            self._announce(group, old[group], self.tables[group])

    def attach_planner(self, planner: Planner) -> None:
        """Let ``planner`` shape every table built from now on (wired by the plugin, before any
        switching state exists, so the tables already built stay valid)."""
        self.planner = planner

    def apply(self, effects: Effects) -> None:
        """Carry out what the planner decided, in order (see ``litellm_failover.actions``)."""
        for action in effects:
            if isinstance(action, Announce):
                self.emit(
                    FailoverEvent(
                        event_type=action.event_type,
                        model_group=action.group,
                        deployment_id=action.deployment_id,
                        reason=action.reason,
                        instance_id=self.instance_id,
                        details=dict(action.details),
                    )
                )
            elif isinstance(action, Eject):
                self.eject(action.deployment_id, action.reason, source=action.source, **action.details)
            elif isinstance(action, Rebuild):
                self.rebuild(
                    action.group,
                    source=action.source,
                    reason=action.reason,
                    deployment_id=action.deployment_id,
                )

    def preview(self, group: str, plan: GroupPlan) -> RoutingTable:
        """The table ``group`` would get under ``plan``, built but not swapped in (what serves it
        without a shift, for the planner's failback)."""
        return self._build(group, self.clock(), plan)

    def eject(self, deployment_id: str, reason: str, *, source: str, **details: Any) -> bool:
        """Eject a routable deployment on a decision outside the health machine (a failback ramp
        aborted on errors): out now, back through the half-open probes like any ejection."""
        record = self.health.get(deployment_id)
        transition = record.force_eject(reason, source, self.clock(), **details) if record else None
        if transition is None:
            return False
        self._on_transition(transition)
        return True

    def rebuild(self, group: str, *, source: str, reason: str, deployment_id: str | None = None) -> None:
        """Rebuild one group's table after a switching change; a change of the serving set is a
        failover event whose ``details["source"]`` says what caused it."""
        self._swap(
            group, self._build(group, self.clock()), source=source, reason=reason, deployment_id=deployment_id
        )

    def request_served_elsewhere(self, group: str, first: str, served: str, request_id: str | None) -> None:
        self.emit(
            FailoverEvent(
                event_type=EventType.REQUEST_FAILOVER.value,
                model_group=group,
                deployment_id=served,
                from_deployment=first,
                to_deployment=served,
                reason=f"request failed on {first}, served by {served}",
                request_id=request_id,
                instance_id=self.instance_id,
            )
        )

    # -- decisions out --------------------------------------------------------------------

    def table(self, group: str) -> RoutingTable | None:
        return self.snapshot.tables.get(group)

    def emit(self, event: FailoverEvent) -> None:
        self.recent_events.append(event)
        logger.info(
            "failover event %s group=%s deployment=%s from=%s to=%s reason=%s",
            event.event_type,
            event.model_group,
            event.deployment_id,
            event.from_deployment,
            event.to_deployment,
            event.reason,
        )
        if self.sink is not None:
            self.sink.submit_event(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break routing
                logger.exception("failover event listener failed")

    def status(self) -> dict[str, Any]:
        return status_of(self.snapshot, self.clock())

    # -- internals ------------------------------------------------------------------------

    def _build(self, group: str, now: float, plan: GroupPlan | None = None) -> RoutingTable:
        strategy, in_tier = self.settings.group_strategy(group)
        members = [self.health[i] for i in self.groups[group]]
        if plan is None and self.planner is not None:
            plan = self.planner.plan(group)
        return build_table(
            group, members, strategy, in_tier, now, panic_mode=self.settings.panic_mode, plan=plan
        )

    def _on_transition(self, transition: Transition) -> None:
        record = self.health[transition.deployment_id]
        # The new state is readable before anyone hears of it (a fleet publishes the ejection's
        # remaining time from the snapshot); the table follows after the planner's reaction.
        self.snapshot = self._publish(self.snapshot, (record,))
        self.emit(
            FailoverEvent(
                event_type=EventType.STATE_CHANGE.value,
                model_group=transition.group,
                deployment_id=transition.deployment_id,
                reason=transition.reason,
                request_id=transition.details.get("request_id"),
                instance_id=self.instance_id,
                details={
                    "from_state": transition.from_state.value,
                    "to_state": transition.to_state.value,
                    "source": transition.source,
                    **{k: v for k, v in transition.details.items() if k != "request_id"},
                },
            )
        )
        self._submit_state(record)
        if self.planner is not None:
            # Before the rebuild: a recovered primary may be held down, a ramp may abort.
            self.apply(self.planner.on_transition(transition))
        self._swap(transition.group, self._build(transition.group, self.clock()), transition)

    def _swap(
        self,
        group: str,
        new: RoutingTable,
        cause: Transition | None = None,
        *,
        source: str | None = None,
        reason: str | None = None,
        deployment_id: str | None = None,
    ) -> None:
        old = self.tables.get(group)
        self.tables[group] = new
        # One assignment: readers see the old snapshot or the new one, never a mix. The views are
        # current already (a transition publishes its record's first); only the table is new.
        self.snapshot = self._publish(self.snapshot, ())
        self._announce(group, old, new, cause, source=source, reason=reason, deployment_id=deployment_id)

    def _publish(
        self,
        previous: CoreSnapshot | None,
        records: Iterable[DeploymentHealth],
        *,
        now: float | None = None,
        weights: Mapping[str, float] = MappingProxyType({}),
    ) -> CoreSnapshot:
        return publish(
            previous,
            instance_id=self.instance_id,
            tables=self.tables,
            groups=self._members,
            records=records,
            now=self.clock() if now is None else now,
            weights=weights,
        )

    def _announce(
        self,
        group: str,
        old: RoutingTable | None,
        new: RoutingTable,
        cause: Transition | None = None,
        *,
        source: str | None = None,
        reason: str | None = None,
        deployment_id: str | None = None,
    ) -> None:
        """The events of a table swap: panic mode entered or left, a new serving set."""
        if old is None:
            return
        if old.panic != new.panic:
            self.emit(
                FailoverEvent(
                    event_type=EventType.PANIC_MODE.value,
                    model_group=group,
                    reason=(
                        "every deployment is out: routing to all of them (panic mode)"
                        if new.panic
                        else "a deployment is routable again: panic mode over"
                    ),
                    instance_id=self.instance_id,
                    details={"entered": new.panic, "deployments": list(self.groups[group])},
                )
            )
        if old.serving != new.serving:
            details: dict[str, Any] = {
                "from": list(old.serving),
                "to": list(new.serving),
                "from_tier": old.active_tier,
                "to_tier": new.active_tier,
                "panic": new.panic,
            }
            source = source or (cause.source if cause else None)
            if source is not None:
                details["source"] = source  # what caused it: the metrics' failover reason label
            self.emit(
                FailoverEvent(
                    event_type=EventType.FAILOVER.value,
                    model_group=group,
                    deployment_id=cause.deployment_id if cause else deployment_id,
                    from_deployment=",".join(old.serving) or None,
                    to_deployment=",".join(new.serving) or None,
                    reason=reason or (cause.reason if cause else "routing table rebuilt"),
                    instance_id=self.instance_id,
                    details=details,
                )
            )

    def _submit_state(self, record: DeploymentHealth) -> None:
        if self.sink is None:
            return
        self.sink.submit_state(
            DeploymentStateRow(
                deployment_id=record.spec.deployment_id,
                model_group=record.spec.group,
                state=record.state.value,
                reason=record.reason,
                instance_id=self.instance_id,
                checks={
                    name: {"ok": c.ok, "severity": c.severity.value, "reason": c.reason, "value": c.value}
                    for name, c in record.checks.items()
                },
                ejection_count=record.outlier.ejection_count,
            )
        )


def _verdicts(checks: dict[str, CheckResult]) -> dict[str, tuple[bool, str, str]]:
    """What a stored state row must follow: pass or fail, and why a check fails. A passing
    check's text carries its measurement ("3 ms"), which changes every round; rewriting the row
    for that would turn every probe into a database write."""
    return {name: (c.ok, c.severity.value, "" if c.ok else c.reason) for name, c in checks.items()}


__all__ = ["EventSink", "FailoverCore", "HealthState"]
