"""Metric families as plain data, so two plugins' families can be merged before they are exported.

A ``PluginCollector`` builds ``Family`` values; ``to_prometheus`` turns one into the
prometheus_client family the registry renders. Keeping our own small type (rather than building
prometheus_client objects straight away) is what lets the default-registry bridge merge the
families of several plugins in one process by name and label values, with a rule per family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "litellm_failover_"


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"


class Merge(StrEnum):
    """How two plugins' samples with the same name and labels combine on the default registry.

    ``FIRST``: they describe the same thing twice (two Routers serving one model group); the
    first plugin's value is kept and the clash is logged. ``SUM``: per-plugin amounts (queued or
    dropped rows) add up to the process's. ``MIN``: a "connected" flag is 1 only if every plugin's
    is.
    """

    FIRST = "first"
    SUM = "sum"
    MIN = "min"


@dataclass(slots=True)
class Family:
    name: str  # full name; a counter's without the ``_total`` suffix
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    merge: Merge = Merge.FIRST
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(self, value: float, *label_values: str) -> None:
        self.samples[label_values] = float(value)

    def to_prometheus(self) -> Metric:
        cls = CounterMetricFamily if self.kind is Kind.COUNTER else GaugeMetricFamily
        family = cls(self.name, self.help, labels=list(self.labels))
        for label_values, value in self.samples.items():
            family.add_metric(list(label_values), value)
        return family


def merge_families(per_plugin: list[list[Family]]) -> tuple[list[Family], list[str]]:
    """Merge several plugins' families by name; returns them and the clashes ``FIRST`` resolved."""
    merged: dict[str, Family] = {}
    clashes: list[str] = []
    for families in per_plugin:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                merged[family.name] = Family(
                    family.name, family.kind, family.help, family.labels, family.merge, dict(family.samples)
                )
                continue
            for key, value in family.samples.items():
                if key not in into.samples:
                    into.samples[key] = value
                elif into.merge is Merge.SUM:
                    into.samples[key] += value
                elif into.merge is Merge.MIN:
                    into.samples[key] = min(into.samples[key], value)
                else:
                    clashes.append(f"{family.name}{dict(zip(family.labels, key, strict=True))}")
    return list(merged.values()), clashes
