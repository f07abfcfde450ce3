"""``PluginCollector``: a prometheus_client custom collector that reads the plugin at scrape time.

Nothing on the request path updates a metric: a scrape reads the core's snapshot (the routing
tables and a view of each deployment's health, see ``litellm_failover.snapshot``), the writer's
counters, the event counters and the probe latency histogram (kept off the request path, see
``counters`` and ``probe_latency``) and whatever optional providers the plugin has, and builds the
families then. A pick costs the same with metrics on or off. Every family is built from its entry
in ``catalog``, which lists them all.

Scrapes may run in another thread than the plugin's event loop (LiteLLM's /metrics renders in a
worker thread, and so does the plugin's own port), so the collector reads one snapshot per scrape
(frozen, replaced whole by the core on the loop, never mutated: one consistent state) and the
copies the counters and the histogram take under their own locks. It calls nothing that prunes or
mutates: weights come from the table, which was built on the loop. An optional provider that
fails is skipped for that scrape and logged.

Optional providers, read with ``getattr`` so metrics of features built later appear once they
exist (see ``MetricsSource``):

- ``in_flight_counts() -> Mapping[deployment_id, int]``: requests and streams in flight (the
  drain feature fills it);
- ``ramp_factors() -> Mapping[deployment_id, float]`` or a table's ``ramp`` mapping: the slow
  start multiplier (1.0 when absent);
- ``draining() -> Collection[deployment_id]`` or a table's ``draining`` collection;
- ``fleet.status()`` with ``connected``, ``published``, ``applied``, ``ignored``;
- ``control.gate.rejected``: rejected commands and fleet messages by (transport, reason);
- ``alerter.stats()`` with ``sent`` and ``failed``;
- ``prober.rounds``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import Metric

from litellm_failover import __version__
from litellm_failover.health import HealthState
from litellm_failover.metrics import catalog
from litellm_failover.metrics.counters import EventCounters
from litellm_failover.metrics.families import Family
from litellm_failover.metrics.probe_latency import ProbeLatency

logger = logging.getLogger("litellm_failover")

STATES = tuple(state.value for state in HealthState)

# writer.stats() key -> the ``kind`` label of the writer's row counters.
_WRITTEN = {"written": "events", "states_written": "states", "sessions_written": "sessions"}
_WRITTEN["messages_written"] = "messages"
_DROPPED = {"dropped": "events", "messages_dropped": "messages", "sessions_dropped": "sessions"}


class MetricsSource(Protocol):
    """What the collector reads; ``FailoverPlugin`` is one. Required: ``core`` (its ``snapshot``:
    ``groups``, ``tables``, ``deployments``) and ``writer`` (``stats()``). Everything in the module
    docstring is optional and read defensively."""

    @property
    def core(self) -> Any: ...

    @property
    def writer(self) -> Any: ...


class PluginCollector:
    def __init__(
        self,
        source: MetricsSource,
        counters: EventCounters | None = None,
        probe_latency: ProbeLatency | None = None,
    ) -> None:
        self.source = source
        self.counters = counters or EventCounters()
        self.probe_latency = probe_latency or ProbeLatency()
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
            self._event_families,
            self._writer_families,
            self._alert_families,
            self._fleet_families,
            self._rejection_families,
            self._prober_families,
            self._build_families,
        ):
            families += self._call(section.__name__.strip("_"), section) or []
        return families

    def _deployment_families(self) -> list[Family]:
        state = Family(catalog.DEPLOYMENT_STATE)
        weight = Family(catalog.DEPLOYMENT_EFFECTIVE_WEIGHT)
        serving = Family(catalog.DEPLOYMENT_SERVING)
        tier = Family(catalog.DEPLOYMENT_TIER)
        ramp = Family(catalog.DEPLOYMENT_RAMP_FACTOR)
        in_flight = Family(catalog.DEPLOYMENT_IN_FLIGHT_REQUESTS)
        draining = Family(catalog.DEPLOYMENT_DRAINING)
        latency = Family(catalog.PROBE_LATENCY_SECONDS)
        checks = Family(catalog.PROBE_CHECK_OK)
        ejections = Family(catalog.DEPLOYMENT_EJECTIONS)

        snapshot = self.source.core.snapshot  # one consistent view for the whole scrape
        in_flight_of = self._provided("in_flight_counts")
        ramp_of = self._provided("ramp_factors")
        drain_set = _ids(self._provided("draining"))
        probed = self.probe_latency.snapshot()
        for group, ids in snapshot.groups.items():
            table = snapshot.tables.get(group)
            weights: Mapping[str, float] = getattr(table, "weights", None) or {}
            serving_ids = set(getattr(table, "serving", ()) or ())
            table_ramp = _mapping(getattr(table, "ramp", None))
            drained = drain_set if drain_set is not None else _ids(getattr(table, "draining", None))
            for deployment_id in ids:
                record = snapshot.deployments[deployment_id]
                labels = (group, deployment_id, deployment_id)  # model_id: LiteLLM's name for it
                current = record.state.value
                for name in STATES if current in STATES else (*STATES, current):
                    state.add(1.0 if name == current else 0.0, *labels, name)
                weight.add(weights.get(deployment_id, 0.0), *labels)
                serving.add(1.0 if deployment_id in serving_ids else 0.0, *labels)
                tier.add(record.spec.tier, *labels)
                factor = _lookup(ramp_of, deployment_id)
                if factor is None:
                    factor = _lookup(table_ramp, deployment_id)
                ramp.add(1.0 if factor is None else factor, *labels)
                if isinstance(in_flight_of, Mapping):
                    in_flight.add(in_flight_of.get(deployment_id, 0), *labels)
                if drained is not None:
                    draining.add(1.0 if deployment_id in drained else 0.0, *labels)
                if deployment_id in probed:
                    latency.add_buckets(probed[deployment_id], *labels)
                elif record.probed:
                    latency.add_buckets(self.probe_latency.empty(), *labels)
                for check in record.checks.values():
                    checks.add(1.0 if check.ok else 0.0, *labels, check.name)
                ejections.add(record.ejection_count, *labels)
        return [state, weight, serving, tier, ramp, in_flight, draining, latency, checks, ejections]

    def _group_families(self) -> list[Family]:
        panic = Family(catalog.GROUP_PANIC)
        active = Family(catalog.GROUP_ACTIVE_TIER)
        for group, table in self.source.core.snapshot.tables.items():
            panic.add(1.0 if table.panic else 0.0, group)
            if table.active_tier is not None:
                active.add(table.active_tier, group)
        return [panic, active]

    def _event_families(self) -> list[Family]:
        """The counters of ``EventCounters``: failovers, state changes, streams, drains."""
        families = []
        for spec, counts in self.counters.snapshot().items():
            family = Family(spec)
            for label_values, count in counts.items():
                family.add(count, *label_values)
            families.append(family)
        return families

    def _writer_families(self) -> list[Family]:
        stats = self._call("writer.stats", lambda: self.source.writer.stats())
        if not stats:
            return []
        depth = Family(catalog.WRITER_QUEUE_DEPTH)
        written = Family(catalog.WRITER_WRITTEN_ROWS)
        dropped = Family(catalog.WRITER_DROPPED_ROWS)
        rejected = Family(catalog.WRITER_REJECTED_ROWS)
        connected = Family(catalog.WRITER_CONNECTED)
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

    def _alert_families(self) -> list[Family]:
        alerter = getattr(self.source, "alerter", None)
        stats = self._call("alerter.stats", alerter.stats) if alerter is not None else None
        if not stats:
            return []
        sent, failed = Family(catalog.ALERTS_SENT), Family(catalog.ALERTS_FAILED)
        sent.add(stats.get("sent", 0))
        failed.add(stats.get("failed", 0))
        return [sent, failed]

    def _fleet_families(self) -> list[Family]:
        fleet = getattr(self.source, "fleet", None)
        if fleet is None:
            return []
        status = self._call("fleet.status", fleet.status)
        if not status:
            return []
        connected = Family(catalog.FLEET_CONNECTED)
        connected.add(1.0 if status.get("connected") else 0.0)
        messages = Family(catalog.FLEET_MESSAGES)
        for key in ("published", "applied", "ignored"):
            if isinstance(status.get(key), int | float):
                messages.add(status[key], key)
        return [connected, messages]

    def _rejection_families(self) -> list[Family]:
        """Rejected commands and fleet messages, from the control plane's ``AuthGate``."""
        gate = getattr(getattr(self.source, "control", None), "gate", None)
        rejected = getattr(gate, "rejected", None)
        if rejected is None:
            return []
        family = Family(catalog.MESSAGES_REJECTED)
        for (transport, reason), count in sorted(dict(rejected).items()):
            family.add(count, transport, reason)
        return [family]

    def _prober_families(self) -> list[Family]:
        rounds = getattr(getattr(self.source, "prober", None), "rounds", None)
        if rounds is None:
            return []
        family = Family(catalog.PROBE_ROUNDS)
        family.add(rounds)
        return [family]

    def _build_families(self) -> list[Family]:
        build = Family(catalog.BUILD_INFO)
        build.add(1.0, *build_versions())
        return [build]

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


@functools.cache
def build_versions() -> tuple[str, str]:
    """The ``version`` and ``litellm_version`` labels of ``build_info``: the installed
    distributions' versions, read once (they can't change while the process runs)."""
    return __version__, _distribution_version("litellm")


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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
