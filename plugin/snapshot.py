"""``CoreSnapshot``: the read-only view of the core that everything outside it reads.

The core's health records are mutable and belong to the plugin's event loop; its routing tables
are immutable but live in a dict the core keeps replacing. Readers elsewhere (a metrics scrape in
another thread, sessions, streams, fleets, traffic switching, ``status()``) would otherwise reach
into both. Instead the core publishes one frozen ``CoreSnapshot`` (tables, group members, and a
``DeploymentView`` per deployment) and replaces it whole, in one assignment, whenever a table is
swapped or a deployment's health changes. A reader that holds a snapshot sees one consistent
state: never half of an update, never a record changing under it.

Publishing stays cheap for large groups: a view is built again only for a record that changed (a
transition, a probe round), and a table swap shares every view with the previous snapshot. The
periodic refresh (``FailoverCore.tick``, which rebuilds every table for fresh weights anyway)
builds them all once, so the measurements in them (latency, error rate, weight) are at most one
refresh interval old.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.health import DeploymentHealth, HealthState
from litellm_failover.providers.base import CheckResult
from litellm_failover.routing_table import RoutingTable


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """One deployment's health as of the snapshot; measurements are taken when it was built."""

    spec: DeploymentSpec
    state: HealthState
    reason: str
    checks: Mapping[str, CheckResult] = field(default_factory=_empty)
    ejection_count: int = 0
    ejected_until: float = 0.0  # on the core's clock; 0.0: no ejection timer
    last_probe_latency_s: float | None = None
    effective_weight: float = 0.0
    latency_s: float | None = None
    error_rate: float = 0.0
    probed: bool = True
    ejected_by: str | None = None  # the replica whose ejection holds it out (fleets)

    @property
    def id(self) -> str:
        return self.spec.deployment_id

    @property
    def group(self) -> str:
        return self.spec.group

    @property
    def tier(self) -> int:
        return self.spec.tier

    @property
    def routable(self) -> bool:
        return self.state.routable


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    instance_id: str
    tables: Mapping[str, RoutingTable]
    groups: Mapping[str, tuple[str, ...]]  # members in model_list order
    deployments: Mapping[str, DeploymentView]

    def table(self, group: str) -> RoutingTable | None:
        return self.tables.get(group)

    def group_of(self, deployment_id: str) -> str | None:
        view = self.deployments.get(deployment_id)
        return None if view is None else view.group


def view_of(record: DeploymentHealth, now: float, weight: float | None = None) -> DeploymentView:
    """Read a record once, on the event loop (``effective_weight`` prunes its error window).
    ``weight``: its effective weight at ``now`` when a table build has just computed it."""
    return DeploymentView(
        spec=record.spec,
        state=record.state,
        reason=record.reason,
        checks=MappingProxyType(dict(record.checks)),
        ejection_count=record.outlier.ejection_count,
        ejected_until=record.outlier.ejected_until,
        last_probe_latency_s=record.last_probe_latency_s,
        effective_weight=record.effective_weight(now) if weight is None else weight,
        latency_s=record.traffic.latency(now),
        error_rate=record.traffic.error_rate(now),
        probed=record.probed,
        ejected_by=record.ejected_by,
    )


def publish(
    previous: CoreSnapshot | None,
    *,
    instance_id: str,
    tables: Mapping[str, RoutingTable],
    groups: Mapping[str, tuple[str, ...]],
    records: Iterable[DeploymentHealth],
    now: float,
    weights: Mapping[str, float] = MappingProxyType({}),
) -> CoreSnapshot:
    """The next snapshot: fresh views of ``records``, the previous views of everyone else.
    ``weights``: effective weights at ``now`` already computed (see ``table_weights``)."""
    deployments = dict(previous.deployments) if previous is not None else {}
    for record in records:
        deployment_id = record.spec.deployment_id
        deployments[deployment_id] = view_of(record, now, weights.get(deployment_id))
    return CoreSnapshot(
        instance_id=instance_id,
        tables=MappingProxyType(dict(tables)),
        groups=groups,
        deployments=MappingProxyType(deployments),
    )


def table_weights(tables: Iterable[RoutingTable]) -> dict[str, float]:
    """The effective weights that tables just built computed (the costly part of a view): a
    table's weight is the member's effective weight unless panic mode or a slow-start factor
    set it. Only for tables built at the same ``now`` as the views."""
    known: dict[str, float] = {}
    for table in tables:
        if not table.panic:
            known.update((i, w) for i, w in table.weights.items() if i not in table.ramp)
    return known


def status_of(snapshot: CoreSnapshot, now: float) -> dict[str, Any]:
    """``status()``'s groups: a pure function of the snapshot (``now`` only ages the timers)."""
    groups = {}
    for group, ids in snapshot.groups.items():
        table = snapshot.tables[group]
        groups[group] = {
            "strategy": table.strategy,
            "in_tier": table.in_tier,
            "active_tier": table.active_tier,
            "serving": list(table.serving),
            "panic": table.panic,
            "deployments": [_row(snapshot.deployments[i], now) for i in ids],
        }
    return {"instance_id": snapshot.instance_id, "groups": groups}


def _row(view: DeploymentView, now: float) -> dict[str, Any]:
    return {
        "deployment_id": view.id,
        "tier": view.tier,
        "state": view.state.value,
        "reason": view.reason,
        "static_weight": view.spec.weight,
        "effective_weight": round(view.effective_weight, 4),
        "checks": {
            name: {"ok": c.ok, "severity": c.severity.value, "reason": c.reason, "value": c.value}
            for name, c in view.checks.items()
        },
        "ejection_count": view.ejection_count,
        "ejected_for_s": round(max(0.0, view.ejected_until - now), 2),
        "latency_s": None if view.latency_s is None else round(view.latency_s, 4),
        "error_rate": round(view.error_rate, 4),
        "probed": view.probed,
        "ejected_by": view.ejected_by,
    }


__all__ = ["CoreSnapshot", "DeploymentView", "publish", "status_of", "table_weights", "view_of"]
