"""Deployments joining, changing and leaving a running core (``FailoverCore`` inherits this).

LiteLLM's model list is not fixed: ``router.add_deployment``, ``upsert_deployment`` and
``delete_deployment`` (which the proxy's model-management API and its database reload call) change
it while requests run. ``litellm_failover.deployments_watch`` notices each change and hands the
core one ``Membership`` change; this applies it the way a health transition is applied: the records
first, then every touched group's table rebuilt and swapped, then one snapshot published whole, so
a reader sees the old membership or the new one, never half of it.

A deployment updated in a way that does not change what is probed or where it lives (its weight,
its tier) keeps its health record: a node that is out stays out. Anything else is a
new deployment under an old id, and starts like one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.health import DeploymentHealth
from litellm_failover.records import DeploymentStateRow
from litellm_failover.routing_table import RoutingTable
from litellm_failover.settings import FailoverSettings
from litellm_failover.snapshot import CoreSnapshot


@dataclass(frozen=True, slots=True)
class Membership:
    """One change of the deployments the core manages, applied at once."""

    added: Sequence[DeploymentSpec] = ()
    updated: Sequence[DeploymentSpec] = ()  # same id, different fields
    removed: Sequence[str] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def same_target(old: DeploymentSpec, new: DeploymentSpec) -> bool:
    """Whether ``new`` is the same node, probed the same way, in the same group: only its weight
    or tier changed, so its health so far still holds."""
    unrouted = ("order", "weight")
    params = {k: v for k, v in old.litellm_params.items() if k not in unrouted}
    return (
        old.group == new.group
        and old.failover == new.failover
        and params == {k: v for k, v in new.litellm_params.items() if k not in unrouted}
    )


class MembershipMixin:
    """The membership half of ``FailoverCore``; its state and helpers are the core's own."""

    settings: FailoverSettings
    instance_id: str
    health: dict[str, DeploymentHealth]
    groups: dict[str, list[str]]
    tables: dict[str, RoutingTable]
    snapshot: CoreSnapshot
    _members: Mapping[str, tuple[str, ...]]
    clock: Callable[[], float]
    sink: Any

    def change_membership(
        self, change: Membership, *, probed: Callable[[DeploymentSpec], bool], source: str = "litellm"
    ) -> None:
        """Apply ``change``; one ``deployment_added`` / ``_updated`` / ``_removed`` event each.
        ``probed``: whether the prober covers a deployment (the prober is told first)."""
        touched: set[str] = set()
        events: list[FailoverEvent] = []
        for deployment_id in change.removed:
            record = self.health.pop(deployment_id, None)
            if record is None:
                continue
            group = record.spec.group
            self.groups[group].remove(deployment_id)
            touched.add(group)
            events.append(self._membership_event(EventType.DEPLOYMENT_REMOVED, record.spec, source))
        for spec in change.updated:
            record = self.health.get(spec.deployment_id)
            if record is None:
                continue
            old = record.spec
            kept = same_target(old, spec)
            if kept:
                record.respecify(spec)
            else:
                self.groups[old.group].remove(spec.deployment_id)
                touched.add(old.group)
                self.health[spec.deployment_id] = DeploymentHealth(spec, self.settings, probed=probed(spec))
                self.groups.setdefault(spec.group, []).append(spec.deployment_id)
            touched.add(spec.group)
            changed = _changed_fields(old, spec)
            events.append(
                self._membership_event(
                    EventType.DEPLOYMENT_UPDATED, spec, source, changed=changed, health_kept=kept
                )
            )
        for spec in change.added:
            if spec.deployment_id in self.health:
                continue
            self.health[spec.deployment_id] = DeploymentHealth(spec, self.settings, probed=probed(spec))
            self.groups.setdefault(spec.group, []).append(spec.deployment_id)
            touched.add(spec.group)
            events.append(self._membership_event(EventType.DEPLOYMENT_ADDED, spec, source))
        if not touched:
            return
        self._rebuild_membership(touched, events)

    def _rebuild_membership(self, touched: Iterable[str], events: list[FailoverEvent]) -> None:
        now = self.clock()
        old_tables: dict[str, RoutingTable | None] = {}
        for group in touched:
            old_tables[group] = self.tables.get(group)
            if self.groups.get(group):
                self.tables[group] = self._build(group, now)  # type: ignore[attr-defined]
            else:  # its last deployment left: LiteLLM no longer routes the group either
                self.groups.pop(group, None)
                self.tables.pop(group, None)
        self._members = MappingProxyType({group: tuple(ids) for group, ids in self.groups.items()})
        # A fresh snapshot of every record: views of removed deployments must go, not linger.
        self.snapshot = self._publish(None, self.health.values(), now=now)  # type: ignore[attr-defined]
        for event in events:
            self.emit(event)  # type: ignore[attr-defined]
            record = self.health.get(str(event.deployment_id))
            if event.event_type == EventType.DEPLOYMENT_REMOVED.value:
                self._stored_as_removed(event)
            elif record is not None:
                self._submit_state(record)  # type: ignore[attr-defined]
        for group, old in old_tables.items():
            new = self.tables.get(group)
            if old is not None and new is not None:
                self._announce(group, old, new, source="membership", reason="deployments changed")  # type: ignore[attr-defined]

    def _stored_as_removed(self, event: FailoverEvent) -> None:
        """Its stored state says it is gone: ``litellm-failover status`` must not go on showing a
        deleted deployment as healthy."""
        if self.sink is not None and event.deployment_id:
            self.sink.submit_state(
                DeploymentStateRow(
                    deployment_id=event.deployment_id,
                    model_group=event.model_group or "",
                    state="removed",
                    reason="deleted from LiteLLM's model list",
                    instance_id=self.instance_id,
                )
            )

    def _membership_event(
        self, event_type: EventType, spec: DeploymentSpec, source: str, **details: Any
    ) -> FailoverEvent:
        verb = {
            EventType.DEPLOYMENT_ADDED: "added to",
            EventType.DEPLOYMENT_UPDATED: "updated in",
            EventType.DEPLOYMENT_REMOVED: "removed from",
        }[event_type]
        return FailoverEvent(
            event_type=event_type.value,
            model_group=spec.group,
            deployment_id=spec.deployment_id,
            reason=f"deployment {verb} LiteLLM's model list",
            instance_id=self.instance_id,
            details={"tier": spec.tier, "weight": spec.weight, "source": source, **details},
        )


def _changed_fields(old: DeploymentSpec, new: DeploymentSpec) -> list[str]:
    """The names of what changed (never the values: ``litellm_params`` holds credentials)."""
    names = ("group", "tier", "weight", "model")
    changed = [name for name in names if getattr(old, name) != getattr(new, name)]
    keys = set(old.litellm_params) | set(new.litellm_params)
    changed += sorted(
        f"litellm_params.{k}"
        for k in keys
        if k not in ("order", "weight", "model") and old.litellm_params.get(k) != new.litellm_params.get(k)
    )
    if old.failover != new.failover:
        changed.append("model_info.failover")
    return changed


__all__ = ["Membership", "MembershipMixin", "same_target"]
