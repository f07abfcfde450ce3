"""``PluginCollector``: a prometheus_client custom collector that reads the plugin at scrape time.

Nothing on the request path updates a metric: a scrape reads the core's snapshot (the routing
tables and a view of each deployment's health, see ``litellm_failover.snapshot``), the writer's
counters and whatever optional providers the plugin has, and builds the families then. A pick
costs the same with metrics on or off.

Scrapes may run in another thread than the plugin's event loop (LiteLLM's /metrics renders in a
worker thread, and so does the plugin's own port), so the collector reads one snapshot per scrape:
frozen, replaced whole by the core on the loop, never mutated, so a scrape sees one consistent
state and calls nothing that prunes or mutates. An optional provider that fails is skipped for
that scrape and logged.

Optional providers, read with ``getattr`` so metrics of features built later appear once they
exist (see ``MetricsSource``):

- ``in_flight_counts() -> Mapping[deployment_id, int]``: requests and streams in flight (the
  drain feature fills it);
- ``ramp_factors() -> Mapping[deployment_id, float]`` or a table's ``ramp`` mapping: the slow
  start multiplier (1.0 when absent);
- ``draining() -> Collection[deployment_id]`` or a table's ``draining`` collection;
- ``fleet.status()`` with ``connected``, ``published``, ``applied``, ``ignored``;
- ``prober.rounds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import Metric

from litellm_failover.health import HealthState
from litellm_failover.metrics.counters import EventCounters
from litellm_failover.metrics.families import PREFIX, Family, Kind, Merge

logger = logging.getLogger("litellm_failover")

DEPLOYMENT = ("model_group", "deployment")
GROUP = ("model_group",)
STATES = tuple(state.value for state in HealthState)

# writer.stats() key -> the ``kind`` label of the writer's row counters.
_WRITTEN = {"written": "events", "states_written": "states", "sessions_written": "sessions"}
_WRITTEN["messages_written"] = "messages"
_DROPPED = {"dropped": "events", "messages_dropped": "messages"}


class MetricsSource(Protocol):
    """What the collector reads; ``FailoverPlugin`` is one. Required: ``core`` (its ``snapshot``,
    a ``litellm_failover.snapshot.CoreSnapshot``) and ``writer`` (``stats()``). Everything in the
    module docstring is optional and read defensively."""

    @property
    def core(self) -> Any: ...

    @property
    def writer(self) -> Any: ...


class PluginCollector:
    def __init__(self, source: MetricsSource, counters: EventCounters | None = None) -> None:
        self.source = source
        self.counters = counters or EventCounters()
        self._warned: set[str] = set()

    # -- prometheus_client's collector protocol -------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the plugin's state and providers."""
        return []

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            if family.samples:  # a provider the plugin lacks leaves its family out
                yield family.to_prometheus()

    # -- the families ---------------------------------------------------------------------

    def families(self) -> list[Family]:
        """Every family, section by section. A section that fails is left out of this scrape:
        on the proxy's /metrics an exception here would fail LiteLLM's own metrics too."""
        families: list[Family] = []
        for section in (
            self._deployment_families,
            self._group_families,
            self._writer_families,
            self._fleet_families,
            self._prober_families,
        ):
            families += self._call(section.__name__.strip("_"), section) or []
        return families

    def _deployment_families(self) -> list[Family]:
        state = _gauge(
            "deployment_state",
            "1 for the deployment's current health state, 0 for the others.",
            (*DEPLOYMENT, "state"),
        )
        weight = _gauge(
            "deployment_effective_weight",
            "Effective weight in the current routing table (0: not routed).",
            DEPLOYMENT,
        )
        serving = _gauge(
            "deployment_serving", "1 if the deployment is in its group's active tier.", DEPLOYMENT
        )
        tier = _gauge("deployment_tier", "The deployment's tier (litellm_params.order).", DEPLOYMENT)
        ramp = _gauge("deployment_ramp_factor", "Slow-start traffic factor (1.0: full share).", DEPLOYMENT)
        in_flight = _gauge("deployment_in_flight_requests", "Requests and streams in flight.", DEPLOYMENT)
        draining = _gauge("deployment_draining", "1 while the deployment is draining.", DEPLOYMENT)
        latency = _gauge(
            "probe_latency_seconds", "Latency of the deployment's last active probe.", DEPLOYMENT
        )
        checks = _gauge(
            "probe_check_ok", "1 if the check passed in the last probe round.", (*DEPLOYMENT, "check")
        )
        ejections = _gauge(
            "deployment_ejection_count",
            "Ejections counted for flap damping (decays after a healthy period).",
            DEPLOYMENT,
        )

        snapshot = self.source.core.snapshot  # one consistent view for the whole scrape
        in_flight_of = self._provided("in_flight_counts")
        ramp_of = self._provided("ramp_factors")
        drain_set = _ids(self._provided("draining"))
        for group, ids in snapshot.groups.items():
            table = snapshot.tables.get(group)
            weights: Mapping[str, float] = getattr(table, "weights", None) or {}
            serving_ids = set(getattr(table, "serving", ()) or ())
            table_ramp = _mapping(getattr(table, "ramp", None))
            drained = drain_set if drain_set is not None else _ids(getattr(table, "draining", None))
            for deployment_id in ids:
                record = snapshot.deployments[deployment_id]
                labels = (group, deployment_id)
                current = record.state.value
                for name in STATES if current in STATES else (*STATES, current):
                    state.add(1.0 if name == current else 0.0, *labels, name)
                weight.add(weights.get(deployment_id, 0.0), *labels)
                serving.add(1.0 if deployment_id in serving_ids else 0.0, *labels)
                tier.add(record.tier, *labels)
                factor = _lookup(ramp_of, deployment_id)
                if factor is None:
                    factor = _lookup(table_ramp, deployment_id)
                ramp.add(1.0 if factor is None else factor, *labels)
                if isinstance(in_flight_of, Mapping):
                    in_flight.add(in_flight_of.get(deployment_id, 0), *labels)
                if drained is not None:
                    draining.add(1.0 if deployment_id in drained else 0.0, *labels)
                if record.last_probe_latency_s is not None:
                    latency.add(record.last_probe_latency_s, *labels)
                for check in record.checks.values():
                    checks.add(1.0 if check.ok else 0.0, *labels, check.name)
                ejections.add(record.ejection_count, *labels)
        return [state, weight, serving, tier, ramp, in_flight, draining, latency, checks, ejections]

    def _group_families(self) -> list[Family]:
        panic = _gauge("group_panic", "1 while the group routes to every member (panic mode).", GROUP)
        active = _gauge("group_active_tier", "The tier the group serves from right now.", GROUP)
        failovers = _counter(
            "failovers",
            "Failovers: changes of a group's serving deployments (reason: what caused them) and "
            "requests served by other than their first pick (reason=request).",
            (*GROUP, "reason"),
        )
        changes = _counter(
            "state_changes", "Health state transitions, by the state entered.", (*DEPLOYMENT, "state")
        )
        for group, table in self.source.core.snapshot.tables.items():
            panic.add(1.0 if table.panic else 0.0, group)
            if table.active_tier is not None:
                active.add(table.active_tier, group)
        failover_counts, change_counts = self.counters.snapshot()
        for (group, reason), count in failover_counts.items():
            failovers.add(count, group, reason)
        for (group, deployment, state), count in change_counts.items():
            changes.add(count, group, deployment, state)
        return [panic, active, failovers, changes]

    def _writer_families(self) -> list[Family]:
        stats = self._call("writer.stats", lambda: self.source.writer.stats())
        if not stats:
            return []
        depth = _gauge("writer_queue_depth", "Rows waiting for the database (all kinds).", merge=Merge.SUM)
        written = _counter("writer_written_rows", "Rows written, by kind.", ("kind",), merge=Merge.SUM)
        dropped = _counter(
            "writer_dropped_rows",
            "Rows dropped because the buffer was full or the writer stopped, by kind.",
            ("kind",),
            merge=Merge.SUM,
        )
        rejected = _counter(
            "writer_rejected_rows", "Rows the database refused (dropped after a retry).", merge=Merge.SUM
        )
        connected = _gauge(
            "writer_connected", "1 while the store writer reaches its database.", merge=Merge.MIN
        )
        depth.add(stats.get("queued", 0))
        for key, kind in _WRITTEN.items():
            if key in stats:
                written.add(stats[key], kind)
        for key, kind in _DROPPED.items():
            if key in stats:
                dropped.add(stats[key], kind)
        if "rejected" in stats:
            rejected.add(stats["rejected"])
        connected.add(1.0 if stats.get("connected") else 0.0)
        return [depth, written, dropped, rejected, connected]

    def _fleet_families(self) -> list[Family]:
        fleet = getattr(self.source, "fleet", None)
        if fleet is None:
            return []
        status = self._call("fleet.status", fleet.status)
        if not status:
            return []
        connected = _gauge("fleet_connected", "1 while this replica reaches Redis.", merge=Merge.MIN)
        connected.add(1.0 if status.get("connected") else 0.0)
        messages = _counter(
            "fleet_messages",
            "Fleet messages published by this replica, applied from others, or ignored.",
            ("direction",),
            merge=Merge.SUM,
        )
        for key in ("published", "applied", "ignored"):
            if isinstance(status.get(key), int | float):
                messages.add(status[key], key)
        return [connected, messages]

    def _prober_families(self) -> list[Family]:
        rounds = getattr(getattr(self.source, "prober", None), "rounds", None)
        if rounds is None:
            return []
        family = _counter("probe_rounds", "Active probe rounds completed.", merge=Merge.SUM)
        family.add(rounds)
        return [family]

    # -- optional providers ---------------------------------------------------------------

    def _provided(self, name: str) -> Any:
        """``source.<name>()`` (or a plain attribute), or None when the plugin has no such thing."""
        provider = getattr(self.source, name, None)
        if provider is None:
            return None
        if callable(provider):
            return self._call(name, provider)
        return provider

    def _call(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # a scrape shows what it can; one provider never breaks it
            if name not in self._warned:
                self._warned.add(name)
                logger.warning("metrics: reading %s failed (%s); skipped", name, type(exc).__name__)
            return None


def _gauge(name: str, help: str, labels: tuple[str, ...] = (), *, merge: Merge = Merge.FIRST) -> Family:
    return Family(PREFIX + name, Kind.GAUGE, help, labels, merge)


def _counter(name: str, help: str, labels: tuple[str, ...] = (), *, merge: Merge = Merge.FIRST) -> Family:
    return Family(PREFIX + name, Kind.COUNTER, help, labels, merge)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _ids(value: Any) -> frozenset[str] | None:
    if isinstance(value, Collection) and not isinstance(value, str):
        return frozenset(value)
    return None


def _lookup(found: Any, deployment_id: str) -> float | None:
    if not isinstance(found, Mapping):
        return None
    value = found.get(deployment_id)
    return None if value is None else float(value)
