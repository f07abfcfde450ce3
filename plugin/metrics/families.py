"""Metric families as plain data, so two plugins' families can be merged before they are exported.

A ``PluginCollector`` builds a ``Family`` from a catalogue entry (``catalog.MetricSpec``: name,
kind, help, labels and merge rule all come from there, so nothing is exported that the catalogue
does not list) and fills in its samples; ``to_prometheus`` turns it into the prometheus_client
family the registry renders. Keeping our own small type (rather than building prometheus_client
objects straight away) is what lets the default-registry bridge merge the families of several
plugins in one process by name and label values, with a rule per family.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from litellm_failover.metrics.catalog import Kind, Merge, MetricSpec


@dataclass(frozen=True, slots=True)
class Buckets:
    """One histogram series: cumulative counts per upper bound (``+Inf`` last) and the sum."""

    cumulative: tuple[tuple[float, int], ...]
    sum: float


Value = float | Buckets


@dataclass(slots=True)
class Family:
    spec: MetricSpec
    samples: dict[tuple[str, ...], Value] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def add(self, value: float, *label_values: str) -> None:
        self.samples[label_values] = float(value)

    def add_buckets(self, buckets: Buckets, *label_values: str) -> None:
        self.samples[label_values] = buckets

    def to_prometheus(self) -> Metric:
        spec = self.spec
        labels = list(spec.labels)
        if spec.kind is Kind.HISTOGRAM:
            histogram = HistogramMetricFamily(spec.name, spec.help, labels=labels)
            for label_values, value in self.samples.items():
                assert isinstance(value, Buckets)
                bounds = [(_bound(le), float(count)) for le, count in value.cumulative]
                histogram.add_metric(list(label_values), bounds, value.sum)
            return histogram
        if spec.kind is Kind.INFO:
            # prometheus_client appends ``_info`` itself; the labels are the info's content.
            info = InfoMetricFamily(spec.name.removesuffix("_info"), spec.help, labels=labels)
            for label_values in self.samples:
                info.add_metric(list(label_values), {})
            return info
        cls = CounterMetricFamily if spec.kind is Kind.COUNTER else GaugeMetricFamily
        family = cls(spec.name, spec.help, labels=labels)  # a counter's ``_total`` is its own
        for label_values, value in self.samples.items():
            assert not isinstance(value, Buckets)
            family.add_metric(list(label_values), value)
        return family


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(float(le))


def merge_families(per_plugin: list[list[Family]]) -> tuple[list[Family], list[str]]:
    """Merge several plugins' families by name; returns them and the clashes ``FIRST`` resolved.
    ``SUM`` and ``MIN`` apply to plain values; a histogram series two plugins both report is a
    ``FIRST`` clash whatever its rule (the same deployment probed twice)."""
    merged: dict[str, Family] = {}
    clashes: list[str] = []
    for families in per_plugin:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                merged[family.name] = Family(family.spec, dict(family.samples))
                continue
            for key, value in family.samples.items():
                held = into.samples.get(key)
                if held is None:
                    into.samples[key] = value
                elif isinstance(held, Buckets) or isinstance(value, Buckets):
                    clashes.append(_series(family, key))
                elif into.spec.merge is Merge.SUM:
                    into.samples[key] = held + value
                elif into.spec.merge is Merge.MIN:
                    into.samples[key] = min(held, value)
                else:
                    clashes.append(_series(family, key))
    return list(merged.values()), clashes


def _series(family: Family, key: tuple[str, ...]) -> str:
    return f"{family.name}{dict(zip(family.spec.labels, key, strict=True))}"
