"""The drill report: validation, the JSON file and the self-contained HTML page.

No servers: the result dicts are built here the way the drill builds them (a passing SIGKILL
scenario with failover, restore and a failback ramp; a failed http_500 scenario with client errors,
broken streams and hostile text; a skipped network black hole), and the real renderer (matplotlib,
SVG) draws them. The HTML is read back with the standard library's parser, never by string search
alone, so a broken nesting or an unescaped tag shows up as a failure.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from litellm_failover.drill.report import (
    SCHEMA,
    DrillReportError,
    load_json,
    ramp_text,
    validate,
    write_html,
    write_json,
)

BUCKET = 0.5
SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"
HOSTILE = '<script>alert("owned")</script> & "quotes" from upstream'


def _buckets(duration_s: float) -> list[float]:
    return [round(i * BUCKET, 3) for i in range(int(duration_s / BUCKET))]


def sigkill_passed() -> dict[str, Any]:
    """p1 is SIGKILLed at 5 s; s1 serves from 5.31 s; p1 restored at 15 s and ramped back from 18 s."""
    t = _buckets(30.0)
    ramp = [(18.0, 0.10), (20.0, 0.25), (22.0, 0.50), (24.0, 1.0)]

    def p1_share(x: float) -> float:
        if x < 5.0:
            return 1.0
        if x < 18.0:
            return 0.0
        return max(s for at, s in ramp if at <= x)

    served_p1 = [round(8 * p1_share(x)) for x in t]
    served_s1 = [8 - p for p in served_p1]
    return {
        "name": "sigkill",
        "title": "SIGKILL of the primary",
        "description": "p1's vLLM process is killed with SIGKILL under mixed load, then restarted.",
        "status": "passed",
        "skip_reason": None,
        "failures": [],
        "deployments": [{"id": "p1", "tier": 1}, {"id": "s1", "tier": 2}],
        "requests": 412,
        "streams": 120,
        "client_errors": 0,
        "broken_streams": 0,
        "resumed_streams": 3,
        "error_samples": [],
        "latency_ms": {"p50": 41.6, "p99": 180.2},
        "fault_at_s": 5.0,
        "restored_at_s": 15.0,
        "time_to_first_standby_s": 0.31,
        "time_to_failback_s": 3.0,
        "failback_shares": [{"t": at, "share": s} for at, s in ramp],
        "ramp_ok": True,
        "markers": [
            {"t": 5.0, "label": "SIGKILL p1", "kind": "fault"},
            {"t": 5.31, "label": "failover to s1", "kind": "failover"},
            {"t": 15.0, "label": "p1 restarted", "kind": "restore"},
            {"t": 18.0, "label": "failback to p1", "kind": "failback"},
        ],
        "timeline": {
            "bucket_s": BUCKET,
            "t": t,
            "served": {"p1": served_p1, "s1": served_s1},
            "errors": [0] * len(t),
            "broken": [0] * len(t),
        },
        "events": [
            {"t": 5.02, "type": "deployment_ejected", "deployment": "p1", "detail": "connection refused"},
            {"t": 5.31, "type": "failover", "deployment": "s1", "detail": {"from": "p1", "to": "s1"}},
            {
                "t": 5.4,
                "type": "stream_resumed",
                "deployment": "s1",
                "detail": {"chars_sent": 212, "gap_ms": 38},
            },
            {
                "t": 18.0,
                "type": "ramp_started",
                "deployment": "p1",
                "detail": {"steps": [0.1, 0.25, 0.5, 1.0]},
            },
        ],
    }


def http500_failed() -> dict[str, Any]:
    """s1 answers 500s; the run loses requests and streams, and the report must say so loudly."""
    t = _buckets(20.0)
    errors = [3 if 4.0 <= x < 6.0 else 0 for x in t]
    broken = [1 if x in (4.5, 5.0) else 0 for x in t]
    served_p1 = [0 if 4.0 <= x < 9.0 else 6 for x in t]
    served_s1 = [6 - p if 6.0 <= x < 9.0 else 0 for x, p in zip(t, served_p1, strict=True)]
    return {
        "name": "http_500",
        "title": "HTTP 500 storm on the primary",
        "description": "p1 answers every request with 500 for 5 s.",
        "status": "failed",
        "skip_reason": None,
        "failures": ["12 client-visible errors (want 0)", "2 broken streams (want 0)"],
        "deployments": [{"id": "p1", "tier": 1}, {"id": "s1", "tier": 2}],
        "requests": 240,
        "streams": 64,
        "client_errors": 12,
        "broken_streams": 2,
        "resumed_streams": 0,
        "error_samples": [
            f"InternalServerError: upstream said {HOSTILE}",
            f"AuthenticationError: Incorrect API key provided: {SECRET}",
        ],
        "latency_ms": {"p50": 55.0, "p99": 2210.0},
        "fault_at_s": 4.0,
        "restored_at_s": 9.0,
        "time_to_first_standby_s": 2.0,
        "time_to_failback_s": None,
        "failback_shares": [],
        "ramp_ok": False,
        "markers": [
            {"t": 4.0, "label": "http_500 on p1", "kind": "fault"},
            {"t": 6.0, "label": "failover to s1", "kind": "failover"},
            {"t": 9.0, "label": "500s stop", "kind": "restore"},
        ],
        "timeline": {
            "bucket_s": BUCKET,
            "t": t,
            "served": {"p1": served_p1, "s1": served_s1},
            "errors": errors,
            "broken": broken,
        },
        "events": [
            {"t": 4.6, "type": "deployment_ejected", "deployment": "p1", "detail": f"500 from p1 {HOSTILE}"},
        ],
    }


def blackhole_skipped() -> dict[str, Any]:
    return {
        "name": "network_blackhole",
        "title": "Network black hole",
        "description": "A server in its own network namespace whose link is cut.",
        "status": "skipped",
        "skip_reason": "needs CAP_NET_ADMIN to create a network namespace (running unprivileged)",
        "failures": [],
        "deployments": [{"id": "p1", "tier": 1}, {"id": "s1", "tier": 2}],
        "requests": None,
        "streams": None,
        "client_errors": None,
        "broken_streams": None,
        "resumed_streams": None,
        "error_samples": [],
        "latency_ms": None,
        "fault_at_s": None,
        "restored_at_s": None,
        "time_to_first_standby_s": None,
        "time_to_failback_s": None,
        "failback_shares": [],
        "ramp_ok": None,
        "markers": [],
        "timeline": None,
        "events": [],
    }


def make_result(scenarios: list[dict[str, Any]], passed: bool | None = None) -> dict[str, Any]:
    ran = [s for s in scenarios if s["status"] != "skipped"]
    totals = {
        key: sum(s[key] for s in ran)
        for key in ("requests", "streams", "client_errors", "broken_streams", "resumed_streams")
    }
    return {
        "schema": SCHEMA,
        "profile": "plugin",
        "started_at": "2026-11-30T08:40:00Z",
        "duration_s": 187.4,
        "passed": all(s["status"] != "failed" for s in scenarios) if passed is None else passed,
        "config": {
            "model_list": [
                {
                    "model_name": "chat",
                    "litellm_params": {"model": "hosted_vllm/m", "api_key": "***", "order": 1},
                },
            ],
            "failover_settings": {"note": "<b>not bold</b>"},
        },
        "totals": totals,
        "scenarios": scenarios,
    }


class Page(HTMLParser):
    """Collects what the tests look at and checks that elements nest properly."""

    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.starts: list[tuple[str, dict[str, str | None]]] = []
        self.section: str | None = None
        self.svgs_by_section: dict[str | None, int] = {}
        self.text_by_id: dict[str, str] = {}
        self._capture: list[tuple[str, int, list[str]]] = []
        self.rows: dict[str, list[str]] = {}
        self._row: tuple[str, list[str]] | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []
        self.nesting_errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.starts.append((tag, a))
        if tag == "section":
            self.section = a.get("id")
        if tag == "svg":
            self.svgs_by_section[self.section] = self.svgs_by_section.get(self.section, 0) + 1
        if tag == "tr" and a.get("data-scenario") is not None:
            self._row = (a["data-scenario"], [])
        if tag == "td" and self._row is not None:
            self._cell = []
        key = a.get("id") or (a.get("data-total") and "total:" + a["data-total"])
        if key:
            self._capture.append((key, len(self.stack), []))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.nesting_errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows[self._row[0]] = self._row[1]
            self._row = None
        while self._capture and self._capture[-1][1] == len(self.stack):
            ident, _, parts = self._capture.pop()
            self.text_by_id[ident] = "".join(parts)
        if tag == "section":
            self.section = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        for _, _, parts in self._capture:
            parts.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.nesting_errors == []
    assert page.stack == []
    return page


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[dict[str, Any], Path, Page]:
    result = make_result([sigkill_passed(), http500_failed(), blackhole_skipped()])
    path = write_html(result, tmp_path / "report" / "drill.html")
    return result, path, parse(path)


def test_html_has_one_chart_per_scenario_that_ran_and_none_for_the_skipped(mixed) -> None:
    _, path, page = mixed
    assert path.exists()
    assert page.svgs_by_section == {"scenario-sigkill": 1, "scenario-http-500": 1}
    skipped = page.text_by_id["scenario-network-blackhole"]
    assert "needs CAP_NET_ADMIN to create a network namespace" in skipped
    # Self-contained: nothing to fetch, nothing to run.
    tags = {tag for tag, _ in page.starts}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    links = [a.get(k) or "" for _, a in page.starts for k in ("src", "href")]
    assert [link for link in links if link and not link.startswith("#")] == []


def test_failed_run_says_failed_and_a_passing_one_passed(mixed, tmp_path: Path) -> None:
    result, _, page = mixed
    assert result["passed"] is False
    assert page.text_by_id["verdict"] == "FAILED"
    assert "failed: http_500" in "".join(page.text)
    good = make_result([sigkill_passed(), blackhole_skipped()])
    assert good["passed"] is True
    page_ok = parse(write_html(good, tmp_path / "ok.html"))
    assert page_ok.text_by_id["verdict"] == "PASSED"
    assert "FAILED" not in "".join(page_ok.text)


def test_summary_table_shows_each_scenarios_numbers(mixed) -> None:
    _, _, page = mixed
    dash = "\u2014"
    assert page.rows["sigkill"] == [
        "sigkill", "passed", "412", "120", "0", "0", "3", "0.31 s", "3.00 s", "yes", "42 ms", "180 ms",
    ]  # fmt: skip
    assert page.rows["http_500"] == [
        "http_500", "failed", "240", "64", "12", "2", "0", "2.00 s", dash, "no", "55 ms", "2210 ms",
    ]  # fmt: skip
    assert page.rows["network_blackhole"] == ["network_blackhole", "skipped"] + [dash] * 10
    totals = {k.split(":")[1]: v for k, v in page.text_by_id.items() if k.startswith("total:")}
    assert totals == {
        "requests": "652requests",
        "streams": "184streams",
        "client_errors": "12client errors",
        "broken_streams": "2broken streams",
        "resumed_streams": "3resumed streams",
    }


def test_hostile_text_is_escaped_and_secrets_masked(mixed) -> None:
    _, path, page = mixed
    raw = path.read_text(encoding="utf-8")
    assert "<script" not in raw
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in raw
    section = page.text_by_id["scenario-http-500"]
    assert '<script>alert("owned")</script>' in section  # shown to the reader as text
    assert "<b>not bold</b>" in "".join(page.text)
    assert "b" not in {tag for tag, _ in page.starts}
    assert SECRET not in raw
    assert "12 client-visible errors (want 0)" in section


def test_chart_carries_markers_legend_and_consistent_colours(mixed) -> None:
    _, path, page = mixed
    raw = path.read_text(encoding="utf-8")
    for label in (
        "SIGKILL p1 5.00 s",
        "failover to s1 5.31 s",
        "p1 restarted 15.00 s",
        "failback to p1 18.00 s",
    ):
        assert label in raw
    swatches = {}
    for tag, a in page.starts:
        if tag == "span" and "swatch" in (a.get("class") or ""):
            swatches.setdefault(a["style"], 0)
    colours = [s.split(":")[1].lower() for s in swatches]
    assert len(colours) == 2  # p1 and s1, one colour each across the whole page
    charts = raw.split("<svg")[1:]
    for chart in charts:
        for colour in colours:
            assert colour in chart.lower()


def test_json_round_trip_is_stable(tmp_path: Path) -> None:
    result = make_result([sigkill_passed(), http500_failed(), blackhole_skipped()])
    result["scenarios"][0]["extra_measurement"] = {"kv_cache_peak": 0.93}
    first = write_json(result, tmp_path / "a.json")
    second = write_json(copy.deepcopy(result), tmp_path / "b.json")
    assert first.read_bytes() == second.read_bytes()
    umask = os.umask(0o022)
    os.umask(umask)
    assert first.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the user writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp files left
    assert load_json(first) == json.loads(json.dumps(result))
    assert list(json.loads(first.read_text())) == sorted(result)


def test_load_json_refuses_another_schema_naming_file_and_schema(tmp_path: Path) -> None:
    other = tmp_path / "old.json"
    other.write_text(json.dumps({"schema": "litellm-failover-drill/0", "scenarios": []}))
    with pytest.raises(DrillReportError) as err:
        load_json(other)
    assert str(other) in str(err.value) and "'litellm-failover-drill/0'" in str(err.value)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("<html>")
    with pytest.raises(ValueError, match=r"garbage\.json: not a JSON drill report"):
        load_json(garbage)
    broken = make_result([sigkill_passed()])
    del broken["scenarios"][0]["timeline"]["errors"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    with pytest.raises(
        DrillReportError, match=r"bad\.json: .*scenarios\[0\]\.timeline\.errors: required key missing"
    ):
        load_json(bad)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda r: r.pop("totals"), "totals: required key missing"),
        (lambda r: r["scenarios"][1].pop("ramp_ok"), "scenarios[1].ramp_ok: required key missing"),
        (
            lambda r: r["scenarios"][0].update(requests="412"),
            "scenarios[0].requests: expected a non-negative",
        ),
        (lambda r: r["scenarios"][0].update(client_errors=True), "scenarios[0].client_errors"),
        (
            lambda r: r["scenarios"][0]["timeline"]["served"]["p1"].pop(),
            "scenarios[0].timeline.served.p1: ",
        ),
        (
            lambda r: r["scenarios"][1]["latency_ms"].update(p99=math.nan),
            "scenarios[1].latency_ms.p99: ",
        ),
        (
            lambda r: r["scenarios"][0]["markers"][1].update(kind="boom"),
            "scenarios[0].markers[1].kind: ",
        ),
        (lambda r: r["scenarios"][0].update(status="ok"), "scenarios[0].status: expected one of passed"),
        (lambda r: r["scenarios"][1].update(timeline=None), "scenarios[1].timeline: expected an object"),
        (
            lambda r: r["scenarios"][1].update(error_samples=["e"] * 6),
            "scenarios[1].error_samples: at most 5",
        ),
        (
            lambda r: r.update(schema="litellm-failover-drill/2"),
            "schema: expected 'litellm-failover-drill/1'",
        ),
        (lambda r: r.update(started_at="yesterday"), "started_at: expected an ISO 8601 time"),
        (lambda r: r["config"].update(when=time), "config.when: a module cannot be written as JSON"),
        (
            lambda r: r["scenarios"][2].update(name="sigkill"),
            "scenarios[2].name: duplicate scenario name",
        ),
    ],
)
def test_validate_names_the_bad_key(mutate, path: str, tmp_path: Path) -> None:
    result = make_result([sigkill_passed(), http500_failed(), blackhole_skipped()])
    validate(result)
    mutate(result)
    with pytest.raises(ValueError, match=re.escape(path)):
        validate(result)
    with pytest.raises(DrillReportError, match=re.escape(path)):
        write_html(result, tmp_path / "x.html")
    with pytest.raises(DrillReportError, match=re.escape(path)):
        write_json(result, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_nulls_and_extra_keys_render_as_not_measured(tmp_path: Path) -> None:
    sc = sigkill_passed()
    for key in ("time_to_first_standby_s", "time_to_failback_s", "fault_at_s", "restored_at_s", "ramp_ok"):
        sc[key] = None
    sc["latency_ms"] = {"p50": None, "p99": None, "p999": 400.0}
    sc["markers"].append({"t": None, "label": "panic never entered", "kind": "panic"})
    sc["timeline"]["served"]["$cost_$1"] = [0] * len(sc["timeline"]["t"])
    sc["new_field"] = [1, 2, 3]
    sc["share_during_fault"] = 0.125
    long_label = "panic mode: every deployment of group chat is out, failing open to all of them"
    sc["markers"].append({"t": -0.4, "label": long_label, "kind": "panic"})
    path = write_html(make_result([sc]), tmp_path / "n.html")
    page = parse(path)
    assert page.rows["sigkill"][7:] == ["\u2014"] * 5
    assert page.svgs_by_section == {"scenario-sigkill": 1}
    section = page.text_by_id["scenario-sigkill"]
    assert "share during fault0.125" in section  # an extra scalar measurement is shown, not dropped
    assert long_label in section  # in full in the moments list; clipped inside the chart
    chart = path.read_text(encoding="utf-8").split("<svg", 1)[1]
    assert long_label not in chart and long_label[:30] in chart


def test_nine_scenario_report_stays_small(tmp_path: Path) -> None:
    """A long, busy run (9 scenarios, 90 s each, 3 deployments, noisy errors, 120 events) stays < 2 MB."""
    rng = random.Random(5)
    scenarios = []
    for i in range(9):
        sc = http500_failed() if i % 3 == 2 else sigkill_passed()
        sc["name"] = f"{sc['name']}_{i}"
        t = _buckets(90.0)
        tl = sc["timeline"]
        tl["t"] = t
        tl["served"] = {dep: [rng.randint(0, 9) for _ in t] for dep in ("p1", "p2", "s1")}
        tl["errors"] = [rng.choice((0, 0, 0, 1, 2)) for _ in t]
        tl["broken"] = [rng.choice((0, 0, 0, 0, 1)) for _ in t]
        sc["deployments"].append({"id": "p2", "tier": 1})
        sc["events"] = [
            {
                "t": round(rng.uniform(0, 90), 2),
                "type": "probe_failed",
                "deployment": "p1",
                "detail": "timeout " * 8,
            }
            for _ in range(120)
        ]
        scenarios.append(sc)
    path = write_html(make_result(scenarios), tmp_path / "nine.html")  # its render time: bench/call_costs.py
    page = parse(path)
    size = path.stat().st_size
    assert len(page.svgs_by_section) == 9
    assert size < 2_000_000, size
    assert "80 more events in the JSON report." in "".join(page.text)


def test_failback_ramp_is_shown_as_runs_of_equal_share() -> None:
    """The drill measures the share every half second; the page shows the steps, not 30 entries."""
    steps = [0.1] * 4 + [0.25] * 4 + [1.0] * 22
    points = [{"t": 15.0 + i * BUCKET, "share": share, "n": 9} for i, share in enumerate(steps)]
    points.insert(3, {"t": 16.2, "share": None})
    assert ramp_text(points) == "10 % 15.00\u201316.50 s, 25 % 17.00\u201318.50 s, 100 % 19.00\u201329.50 s"
    assert ramp_text([]) == ""
    flapping = [{"t": i * BUCKET, "share": (i % 2) * 1.0} for i in range(20)]
    assert ramp_text(flapping, max_runs=4).endswith("\u2026 16 more changes")


def _unmeasured_ramp(required: bool) -> dict[str, Any]:
    """sigkill with the step-aligned ramp check that could not see its steps (too few answers)."""
    sc = sigkill_passed()
    windows = [
        {"start": 15.0, "end": 18.0, "percent": 0.0, "step": False, "n": 30, "share": 0.0, "measured": True},
        {"start": 18.0, "end": 18.1, "percent": 10.0, "step": True, "n": 1, "share": 1.0, "measured": False},
        {"start": 18.1, "end": 18.2, "percent": 50.0, "step": True, "n": 0, "share": None, "measured": False},
        {"start": 18.2, "end": 30.0, "percent": 100.0, "step": True, "n": 90, "share": 1.0, "measured": True},
    ]
    sc["ramp_ok"] = None
    sc["ramp"] = {"verdict": "not measured", "required": required, "windows": windows}
    return sc


def test_a_ramp_the_check_could_not_see_says_not_measured_in_the_summary_and_the_facts(
    tmp_path: Path,
) -> None:
    page = parse(write_html(make_result([_unmeasured_ramp(False)]), tmp_path / "r.html"))
    assert page.rows["sigkill"][9] == "not measured"
    section = page.text_by_id["scenario-sigkill"]
    assert "(ramp check: not measured)" in section and "yes" not in section.split("failback ramp")[1][:400]
    assert "10 % step 18.00\u201318.10 s: not measured (1 answers)" in section
    assert "100 % step 18.20\u201330.00 s: 100 % of 90 answers" in section
    path = write_html(make_result([_unmeasured_ramp(True)]), tmp_path / "q.html")
    assert parse(path).rows["sigkill"][9] == "not measured (required)"
    assert '<td class="bad">not measured (required)</td>' in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda r: r.update(ramp_ok=True), "scenarios[0].ramp.verdict: does not agree with ramp_ok True"),
        (
            lambda r: r["ramp"].update(verdict="maybe"),
            "scenarios[0].ramp.verdict: expected one of ok, failed",
        ),
        (lambda r: r["ramp"]["windows"][1].pop("n"), "scenarios[0].ramp.windows[1].n: required key missing"),
        (lambda r: r["ramp"]["windows"][0].update(measured="yes"), "scenarios[0].ramp.windows[0].measured"),
    ],
)
def test_validate_checks_the_ramp_verdict_and_its_windows(mutate, path: str) -> None:
    sc = _unmeasured_ramp(False)
    validate(make_result([sc]))
    mutate(sc)
    with pytest.raises(DrillReportError, match=re.escape(path)):
        validate(make_result([sc]))
