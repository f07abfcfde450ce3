"""The drill report as ONE self-contained HTML file (plus the JSON it was drawn from).

Who reads it: an operator who just ran ``litellm-failover chaos drill`` on a laptop, a reviewer who
gets the file attached to a ticket, a CI artifact opened days later. So the page has no scripts, no
external CSS, fonts or images: charts are inline SVG, styles are one inline ``<style>``, and it opens
offline in any browser. Everything that came from a config file, a deployment id or an error message
is HTML-escaped, and free text is passed through the plugin's redactor once more, because an error
message can echo a key the drill did not know about.

Layout: header (verdict, profile, start, duration, totals, deployment colours), a summary table with
one row per scenario, then a section per scenario (description, failures, key moments, chart,
error samples, events), and the proxy config at the end.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from litellm_failover.drill.charts import MARKER_STYLE, deployment_colours, scenario_svg
from litellm_failover.drill.ramp import ramp_verdict
from litellm_failover.drill.report_css import CSS
from litellm_failover.drill.report_schema import (
    COUNTS,
    SCHEMA,
    DrillReportError,
    dumps,
    load_json,
    validate,
    write_json,
    write_text_atomic,
)
from litellm_failover.redact import Redactor

__all__ = [
    "SCHEMA",
    "DrillReportError",
    "load_json",
    "render_html",
    "validate",
    "write_html",
    "write_json",
]

MAX_EVENT_ROWS = 40
SCENARIO_KEYS = frozenset(
    (
        "name", "title", "description", "status", "skip_reason", "failures", "deployments", "requests",
        "streams", "client_errors", "broken_streams", "resumed_streams", "error_samples", "latency_ms",
        "fault_at_s", "restored_at_s", "time_to_first_standby_s", "time_to_failback_s", "failback_shares",
        "ramp_ok", "ramp", "markers", "timeline", "events",
    )
)  # fmt: skip
NOT_MEASURED = "\u2014"  # em dash
_REDACT = Redactor()


def write_html(result: Mapping[str, Any], path: Path) -> Path:
    """Validate the result and write the HTML report; returns the path written."""
    validate(result)
    return write_text_atomic(Path(path), render_html(result))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _free(text: Any, limit: int = 2000) -> str:
    """Escaped and redacted: for error messages and event details, where secrets could hide."""
    return _e(_REDACT(str(text), limit=limit))


def fmt_count(value: int | None) -> str:
    return NOT_MEASURED if value is None else str(value)


def fmt_seconds(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.2f} s"


def fmt_ms(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.0f} ms"


def fmt_bool(value: bool | None) -> str:
    return NOT_MEASURED if value is None else ("yes" if value else "no")


def _slugs(names: Iterable[str]) -> dict[str, str]:
    """Stable, unique anchor ids from scenario names (which may contain anything)."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in names:
        base = "scenario-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x")
        slug, n = base, 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        taken.add(slug)
        out[name] = slug
    return out


def _colours(result: Mapping[str, Any]) -> dict[str, str]:
    deps: list[tuple[str, int | None]] = []
    for sc in result["scenarios"]:
        deps += [(d["id"], d["tier"]) for d in sc["deployments"]]
        known = {d["id"] for d in sc["deployments"]}
        timeline = sc.get("timeline") or {}
        deps += [(dep, None) for dep in timeline.get("served", {}) if dep not in known]
    return deployment_colours(deps)


def _bad(value: int | bool | None) -> str:
    return ' class="bad"' if value else ""


def render_html(result: Mapping[str, Any]) -> str:
    """The whole page as a string; ``write_html`` is the validated, atomic way to put it on disk."""
    colours = _colours(result)
    slugs = _slugs(sc["name"] for sc in result["scenarios"])
    verdict = "PASSED" if result["passed"] else "FAILED"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{verdict}: litellm-failover chaos drill ({_e(result['profile'])})</title>",
        f"<style>{CSS}</style></head><body>",
        _header(result, colours),
        _summary(result, slugs),
    ]
    parts += [_scenario(sc, slugs[sc["name"]], colours) for sc in result["scenarios"]]
    parts += [_config(result), _footer(), "</body></html>\n"]
    return "\n".join(parts)


def _header(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    passed = bool(result["passed"])
    statuses = [sc["status"] for sc in result["scenarios"]]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("passed", "failed", "skipped") if s in statuses)
    totals = result["totals"]
    cards = "".join(
        f'<div class="card{" bad" if key in ("client_errors", "broken_streams") and totals[key] else ""}"'
        f' data-total="{key}"><span class="num">{fmt_count(totals[key])}</span>'
        f'<span class="what">{key.replace("_", " ")}</span></div>'
        for key in COUNTS
    )
    swatches = "".join(
        f'<span class="dep"><span class="swatch" style="background:{c}"></span>{_e(d)}</span>'
        for d, c in colours.items()
    )
    verdict = "PASSED" if passed else "FAILED"
    return (
        f'<header class="{"passed" if passed else "failed"}">'
        f'<div class="verdict" id="verdict">{verdict}</div>'
        "<div><h1>litellm-failover chaos drill</h1>"
        '<dl class="meta">'
        f"<dt>profile</dt><dd>{_e(result['profile'])}</dd>"
        f"{_settings(result)}"
        f"<dt>started</dt><dd>{_e(result['started_at'])}</dd>"
        f"<dt>duration</dt><dd>{fmt_seconds(result['duration_s'])}</dd>"
        f"<dt>scenarios</dt><dd>{len(statuses)} ({_e(counts or 'none')})</dd>"
        f"</dl>{_why(result)}</div></header>"
        f'<section class="totals"><div class="cards">{cards}</div>'
        f'<p class="deps">deployment colours: {swatches or NOT_MEASURED}</p></section>'
    )


def _settings(result: Mapping[str, Any]) -> str:
    """Which plugin settings made these figures (``--settings``); none for plain LiteLLM."""
    settings = (result.get("options") or {}).get("settings")
    return f"<dt>settings</dt><dd>{_e(settings)}</dd>" if settings else ""


def _why(result: Mapping[str, Any]) -> str:
    """Name the scenarios that failed, right under the verdict, so nobody has to scroll to find them."""
    failed = [sc["name"] for sc in result["scenarios"] if sc["status"] == "failed"]
    if result["passed"] or not failed:
        return ""
    return '<p class="why">failed: ' + ", ".join(_e(n) for n in failed) + "</p>"


SUMMARY_COLUMNS = (
    "scenario",
    "status",
    "requests",
    "streams",
    "client errors",
    "broken streams",
    "resumed",
    "time to standby",
    "time to failback",
    "ramp ok",
    "p50",
    "p99",
)


def summary_cells(sc: Mapping[str, Any]) -> list[str]:
    """The summary row as plain text, one string per SUMMARY_COLUMNS entry (tests read it back)."""
    latency = sc.get("latency_ms") or {}
    return [
        sc["name"],
        sc["status"],
        fmt_count(sc["requests"]),
        fmt_count(sc["streams"]),
        fmt_count(sc["client_errors"]),
        fmt_count(sc["broken_streams"]),
        fmt_count(sc["resumed_streams"]),
        fmt_seconds(sc["time_to_first_standby_s"]),
        fmt_seconds(sc["time_to_failback_s"]),
        ramp_verdict(sc) or NOT_MEASURED,
        fmt_ms(latency.get("p50")),
        fmt_ms(latency.get("p99")),
    ]


def _summary(result: Mapping[str, Any], slugs: Mapping[str, str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in SUMMARY_COLUMNS)
    rows = []
    for sc in result["scenarios"]:
        cells = summary_cells(sc)
        tds = [
            f'<td><a href="#{slugs[sc["name"]]}">{_e(cells[0])}</a></td>',
            f'<td><span class="badge {_e(sc["status"])}">{_e(cells[1])}</span></td>',
            f"<td>{cells[2]}</td>",
            f"<td>{cells[3]}</td>",
            f"<td{_bad(sc['client_errors'])}>{cells[4]}</td>",
            f"<td{_bad(sc['broken_streams'])}>{cells[5]}</td>",
        ]
        tds += [f"<td{_bad(c in ('no', 'not measured (required)'))}>{_e(c)}</td>" for c in cells[6:]]
        rows.append(f'<tr data-scenario="{_e(sc["name"])}">{"".join(tds)}</tr>')
    body = "".join(rows) or f'<tr><td colspan="{len(SUMMARY_COLUMNS)}">no scenarios ran</td></tr>'
    return (
        '<section class="summary"><h2>Summary</h2>'
        '<p class="hint">Times to standby and failback are measured from the fault and from the restore. '
        f"{NOT_MEASURED} means not measured or not applicable.</p>"
        f'<div class="scroll"><table id="summary-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div></section>"
    )


def _scenario(sc: Mapping[str, Any], slug: str, colours: Mapping[str, str]) -> str:
    status = sc["status"]
    out = [
        f'<section class="scenario {_e(status)}" id="{slug}">',
        f'<h2><span class="badge {_e(status)}">{_e(status.upper())}</span> {_e(sc["title"])}'
        f' <code class="name">{_e(sc["name"])}</code></h2>',
        f'<p class="description">{_e(sc["description"])}</p>',
    ]
    if sc["failures"]:
        items = "".join(f"<li>{_free(f)}</li>" for f in sc["failures"])
        out.append(f'<div class="failures"><h3>Failures</h3><ul>{items}</ul></div>')
    if status == "skipped":
        reason = sc["skip_reason"] or "no reason given"
        out.append(f'<p class="skip"><strong>Skipped:</strong> {_free(reason)}</p></section>')
        return "".join(out)
    if sc["skip_reason"]:
        out.append(f'<p class="skip">{_free(sc["skip_reason"])}</p>')
    out.append(_facts(sc, colours))
    caption = (
        "Top: share of served requests per deployment in each bucket (grey: nothing served at all); "
        "black dots: measured failback share. Bottom: client errors and broken streams per bucket. "
        "Vertical lines: " + ", ".join(MARKER_STYLE) + "."
    )
    out.append(
        f'<figure class="chart">{scenario_svg(sc, colours)}<figcaption>{caption}</figcaption></figure>'
    )
    if sc["error_samples"]:
        items = "".join(f"<li><code>{_free(s)}</code></li>" for s in sc["error_samples"])
        out.append(f'<div class="samples"><h3>Error samples</h3><ul>{items}</ul></div>')
    out.append(_events(sc["events"], open_=status == "failed"))
    out.append("</section>")
    return "".join(out)


def _facts(sc: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    deps = ", ".join(
        f'<span class="dep"><span class="swatch" style="background:{colours.get(d["id"], "#999")}"></span>'
        f"{_e(d['id'])} (tier {fmt_count(d['tier'])})</span>"
        for d in sc["deployments"]
    )
    moments = " &middot; ".join(
        f'<span class="moment {_e(m["kind"])}">{_e(m["label"])} {fmt_seconds(m["t"])}</span>'
        for m in sorted(sc["markers"], key=lambda m: (m["t"] is None, m["t"] or 0.0))
    )
    ramp = step_text(sc["ramp"]["windows"]) if sc.get("ramp") else ramp_text(sc["failback_shares"])
    latency = sc["latency_ms"] or {}
    rows = [
        ("deployments", deps or NOT_MEASURED),
        ("moments", moments or NOT_MEASURED),
        ("fault at", fmt_seconds(sc["fault_at_s"])),
        ("restored at", fmt_seconds(sc["restored_at_s"])),
        ("first request on standby", _after(sc["time_to_first_standby_s"], "the fault")),
        ("failback", _after(sc["time_to_failback_s"], "the restore")),
        ("failback ramp", f"{_e(ramp) or NOT_MEASURED} (ramp check: {_e(ramp_verdict(sc) or NOT_MEASURED)})"),
        (
            "traffic",
            f"{fmt_count(sc['requests'])} requests, {fmt_count(sc['streams'])} streams, "
            f"{fmt_count(sc['client_errors'])} client errors, {fmt_count(sc['broken_streams'])} broken "
            f"streams, {fmt_count(sc['resumed_streams'])} resumed",
        ),
        ("latency", f"p50 {fmt_ms(latency.get('p50'))}, p99 {fmt_ms(latency.get('p99'))}"),
    ]
    # Measurements this renderer does not know yet (the schema allows extra keys): shown, not lost.
    rows += [
        (_e(key.replace("_", " ")), _e(NOT_MEASURED if value is None else value))
        for key, value in sc.items()
        if key not in SCENARIO_KEYS and (value is None or isinstance(value, str | int | float | bool))
    ]
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def step_text(windows: list[Mapping[str, Any]]) -> str:
    """The judged windows, one per ramp step ("10 % step 2.26\u20132.36 s: 12 % of 17 answers")."""
    parts = []
    for w in windows:
        name = f"{w['percent']:g} % step" if w["step"] else "before the first step"
        seen = (
            f"{round(w['share'] * 100)} % of {w['n']} answers"
            if w["measured"]
            else f"not measured ({w['n']} answers)"
        )
        parts.append(f"{name} {w['start']:.2f}\u2013{w['end']:.2f} s: {seen}")
    return ", ".join(parts)


def ramp_text(points: list[Mapping[str, Any]], max_runs: int = 12) -> str:
    """The measured failback share as runs of equal percent ("10 % 15.00-16.50 s, 100 % from 17.00 s").

    The drill measures every half second; thirty "100 % at ..." entries would hide the two steps
    that matter, so consecutive points with the same whole percent are merged.
    """
    runs: list[list[Any]] = []  # [percent, first t, last t]
    for point in points:
        if point["share"] is None or point["t"] is None:
            continue
        pct = round(point["share"] * 100)
        if runs and runs[-1][0] == pct:
            runs[-1][2] = point["t"]
        else:
            runs.append([pct, point["t"], point["t"]])
    parts = [
        f"{pct} % at {first:.2f} s" if first == last else f"{pct} % {first:.2f}\u2013{last:.2f} s"
        for pct, first, last in runs[:max_runs]
    ]
    if len(runs) > max_runs:
        parts.append(f"\u2026 {len(runs) - max_runs} more changes")
    return ", ".join(parts)


def _after(seconds: float | None, what: str) -> str:
    return NOT_MEASURED if seconds is None else f"{fmt_seconds(seconds)} after {what}"


def _events(events: list[Mapping[str, Any]], *, open_: bool) -> str:
    if not events:
        return '<p class="hint">No plugin events recorded.</p>'
    ordered = sorted(events, key=lambda e: (e["t"] is None, e["t"] or 0.0))
    rows = []
    for ev in ordered[:MAX_EVENT_ROWS]:
        detail = ev["detail"]
        if not isinstance(detail, str):
            detail = json.dumps(detail, sort_keys=True, ensure_ascii=False)
        rows.append(
            f"<tr><td>{fmt_seconds(ev['t'])}</td><td>{_e(ev['type'])}</td>"
            f"<td>{_e(ev['deployment'] or NOT_MEASURED)}</td><td><code>{_free(detail, 400)}</code></td></tr>"
        )
    more = len(ordered) - MAX_EVENT_ROWS
    tail = f'<p class="hint">{more} more events in the JSON report.</p>' if more > 0 else ""
    return (
        f'<details class="events"{" open" if open_ else ""}><summary>Events ({len(ordered)})</summary>'
        "<table><thead><tr><th>t</th><th>type</th><th>deployment</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{tail}</details>"
    )


def _config(result: Mapping[str, Any]) -> str:
    text = dumps(result["config"])
    return (
        '<section class="config"><details><summary>Proxy config used (secrets removed)</summary>'
        f"<pre>{_free(text, limit=len(text) + 1)}</pre></details></section>"
    )


def _footer() -> str:
    return (
        f"<footer>Schema <code>{_e(SCHEMA)}</code>. The JSON report next to this file holds every "
        "number and event shown here. Written by <code>litellm-failover chaos drill</code>.</footer>"
    )
