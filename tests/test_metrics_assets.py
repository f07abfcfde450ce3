"""The shipped Prometheus rules and Grafana dashboard use only metrics and labels the plugin exports.

``examples/prometheus/litellm-failover-rules.yml`` must be a valid Prometheus rule file, and every
PromQL expression in it and in ``examples/grafana/litellm-failover.json`` is parsed with
``promql_parser`` (a Rust PromQL parser, offline): each selected metric must be in
``litellm_failover.metrics.catalog.CATALOG`` (or be one of LiteLLM's own, for the ``on(model_id)``
joins), with only labels that metric has. Every catalogue entry must be used by the rules or the
dashboard, or be listed in ``NOT_SHOWN`` with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from litellm.types.integrations.prometheus import PrometheusMetricLabels

from litellm_failover.metrics.catalog import BY_NAME, CATALOG, Kind

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "examples" / "prometheus" / "litellm-failover-rules.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "litellm-failover.json"

# Labels Prometheus adds to every scraped series (the target's), so rules may group by them.
TARGET_LABELS = frozenset({"instance", "job"})
# Catalogue entries neither the rules nor the dashboard use, and why.
NOT_SHOWN: dict[str, str] = {}

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "limit", "query_offset", "rules"}
SEVERITIES = {"info", "warning", "critical"}


# -- reading PromQL ------------------------------------------------------------------------------


def metric_labels(name: str) -> tuple[str, frozenset[str]]:
    """The catalogue name a series name belongs to, and the labels it may carry there."""
    spec = BY_NAME.get(name)
    if spec is not None and spec.kind is not Kind.HISTOGRAM:
        return spec.name, frozenset(spec.labels) | TARGET_LABELS
    for suffix in ("_bucket", "_sum", "_count"):
        spec = BY_NAME.get(name.removesuffix(suffix))
        if name.endswith(suffix) and spec is not None and spec.kind is Kind.HISTOGRAM:
            extra = {"le"} if suffix == "_bucket" else set()
            return spec.name, frozenset(spec.labels) | TARGET_LABELS | extra
    if name.startswith("litellm_") and not name.startswith("litellm_failover_"):
        base = name.removesuffix("_total")  # LiteLLM's own, as its prometheus callback defines them
        labels = getattr(PrometheusMetricLabels, base, None)
        assert isinstance(labels, list), f"{name}: not a LiteLLM metric (PrometheusMetricLabels)"
        return name, frozenset(labels) | TARGET_LABELS
    raise AssertionError(f"{name}: not in litellm_failover.metrics.catalog.CATALOG")


class Used:
    """What one expression selects: catalogue names, and every label it names anywhere."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.metrics: set[str] = set()
        self.available: set[str] = set()  # labels of every metric the expression selects
        self.grouping: set[str] = set()  # labels named in by/without/on/ignoring/group_left
        promql_parser.walk(promql_parser.parse(expr), self._visit)
        assert self.metrics, f"selects no metric: {expr}"
        missing = self.grouping - self.available
        assert not missing, f"{expr}: groups or joins by {sorted(missing)}, which none of its metrics has"

    def _visit(self, node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name: {self.expr}"
            name, labels = metric_labels(node.name)
            self.metrics.add(name)
            self.available |= labels
            for matcher in node.matchers.matchers:
                assert matcher.name in labels, f"{node.name} has no label {matcher.name!r}: {self.expr}"
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            self.grouping |= set(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            modifier = node.modifier
            if modifier.matching is not None:
                self.grouping |= set(modifier.matching.labels)
            self.grouping |= set(modifier.group_labels or ())


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables to values PromQL parses: intervals to a duration, the rest (only ever
    used inside regex matchers here) to a regex."""
    expr = re.sub(r"\$__(rate_)?interval\b", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".*", expr)


def placeholders(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text))


# -- the rule file ------------------------------------------------------------------------------


def load_rules() -> dict[str, Any]:
    with RULES.open() as f:
        return yaml.safe_load(f)


def rules() -> Iterator[dict[str, Any]]:
    for group in load_rules()["groups"]:
        yield from group["rules"]


def test_the_rule_file_is_a_prometheus_rule_file():
    document = load_rules()
    assert set(document) == {"groups"} and isinstance(document["groups"], list) and document["groups"]
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names)), "group names must be unique"
    alerts: list[str] = []
    for group in document["groups"]:
        assert set(group) <= GROUP_KEYS and "rules" in group and group["rules"], group.get("name")
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, f"unknown keys {set(rule) - RULE_KEYS} in {rule}"
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
            name = rule.get("alert") or rule["record"]
            assert LABEL_NAME.match(name), name
            alerts.append(name)
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert isinstance(rule[key], str) and DURATION.match(rule[key]), f"{name}: {key}"
            for key in ("labels", "annotations"):
                mapping = rule.get(key, {})
                assert isinstance(mapping, dict), f"{name}: {key}"
                for label, text in mapping.items():
                    assert LABEL_NAME.match(label) and isinstance(text, str) and text.strip(), (name, label)
            if "alert" in rule:
                assert rule["labels"]["severity"] in SEVERITIES, name
                assert {"summary", "description"} <= set(rule["annotations"]), name
    assert len(alerts) == len(set(alerts)), "alert names must be unique"


@pytest.mark.parametrize("rule", list(rules()), ids=lambda rule: rule.get("alert") or rule.get("record"))
def test_each_rule_uses_catalogued_metrics_and_labels(rule):
    used = Used(rule["expr"])
    text = " ".join(rule.get("annotations", {}).values()) + " ".join(rule.get("labels", {}).values())
    referenced = placeholders(text, r"\$labels\.(\w+)")
    assert referenced <= used.available, f"annotations name labels it lacks: {referenced - used.available}"


def test_the_rules_cover_what_the_issue_asks_for():
    """Ejected for a while, panic, a failover (and a lower tier), dropped rows, broken streams,
    the fleet link, failing alerts."""
    by_metric = {metric for rule in rules() for metric in Used(rule["expr"]).metrics}
    for needed in (
        "litellm_failover_deployment_state",
        "litellm_failover_group_panic",
        "litellm_failover_group_active_tier",
        "litellm_failover_failovers_total",
        "litellm_failover_writer_dropped_rows_total",
        "litellm_failover_streams_broken_total",
        "litellm_failover_fleet_connected",
        "litellm_failover_alerts_failed_total",
    ):
        assert needed in by_metric, needed


# -- the dashboard ----------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    with DASHBOARD.open() as f:
        return json.load(f)


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))  # a collapsed row holds its panels


def targets() -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels(load_dashboard()["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target


def test_the_dashboard_is_a_grafana_dashboard():
    dashboard = load_dashboard()
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    every = list(panels(dashboard["panels"]))
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in every:
        assert panel["type"] and panel["title"] and "gridPos" in panel, panel.get("title")
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']}: no query"
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert found, f"${variable['name']}: {query}"
        _name, labels = metric_labels(found.group(1))
        assert found.group(2) in labels, query


def target_id(value: Any) -> str:
    return value if isinstance(value, str) else value["refId"]


@pytest.mark.parametrize("title, target", list(targets()), ids=target_id)
def test_each_panel_query_uses_catalogued_metrics_and_labels(title, target):
    used = Used(grafana_to_promql(target["expr"]))
    legend = placeholders(target.get("legendFormat", ""), r"\{\{\s*(\w+)\s*\}\}")
    assert legend <= used.available, f"{title}: the legend names labels it lacks: {legend - used.available}"


# -- coverage -----------------------------------------------------------------------------------


def test_every_catalogued_metric_is_shown_or_listed_as_not_shown():
    exprs = [rule["expr"] for rule in rules()]
    exprs += [grafana_to_promql(target["expr"]) for _title, target in targets()]
    shown = {metric for expr in exprs for metric in Used(expr).metrics}
    names = {spec.name for spec in CATALOG}
    assert set(NOT_SHOWN) <= names, "NOT_SHOWN names a metric the catalogue lacks"
    assert not set(NOT_SHOWN) & shown, "NOT_SHOWN names a metric that is shown"
    missing = names - shown - set(NOT_SHOWN)
    assert not missing, f"neither the rules nor the dashboard use {sorted(missing)}"


def test_the_catalogue_is_well_formed():
    assert len({spec.name for spec in CATALOG}) == len(CATALOG)
    for spec in CATALOG:
        assert spec.name.startswith("litellm_failover_") and spec.help.strip(), spec.name
        assert spec.kind in {"gauge", "counter", "histogram", "info"}, spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name  # counters only
        assert not (spec.kind == "gauge" and spec.name.endswith("_count")), spec.name
        assert (spec.kind == "info") == spec.name.endswith("_info"), spec.name
        assert bool(spec.buckets) == (spec.kind == "histogram"), spec.name
        assert all(LABEL_NAME.match(label) and label != "le" for label in spec.labels), spec.name
        if "deployment" in spec.labels:
            assert "model_id" in spec.labels, f"{spec.name}: no join label for LiteLLM's model_id"
