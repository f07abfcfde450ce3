"""Failover under faults: plain LiteLLM vs LiteLLM with litellm-failover, the drill battery, same run.

The drill (``litellm_failover.drill``) runs fault scenarios (SIGKILL, hang, HTTP 500, a lying
``/health``, GPU pressure, mid-stream drops, a flapping node, every node failing its probes, a
network black hole) under a concurrent mixed load (every other request streamed, every answer
checked word for word) through a real ``litellm --config`` proxy in front of fake vLLM nodes.
This bench runs that battery twice, one profile after the other on the same machine: ``plain``,
LiteLLM alone configured as a careful user would (``order`` tiers, ``num_retries``,
``allowed_fails``, ``cooldown_time``, a fallback group of the standbys; see
``litellm_failover.drill.profiles``), then ``plugin``, the same model list with litellm-failover.

Reported per scenario, plain vs plugin: requests served, client-visible errors, broken streams
(text delivered, then an error or a wrong answer), the time from the fault to the first answer
by the standby, the time from the restore to the first answer by the restored node, and whether
that failback came back gradually. Goals (the issue's, for the plugin side): no client error and
no broken stream across the battery, the first standby answer within 1 s of a kill, and every
failback following the configured ramp.

``--settings default`` runs the plugin profile with the plugin's own default ``failover_settings``
(only the database set) instead of the ``tuned`` ones scaled to the drill's short phases; its
phases follow from those settings (a 30 s hold-down and 30 s ramp steps make each failback take
about 95 s), so the battery takes about 15 minutes on a quiet 2-core machine. Plain LiteLLM is
the same under both, and the table and chart say which settings the plugin ran with.

Writes a markdown table (``--markdown``) and an SVG chart (``--chart``). The chart goes to
``docs/failover-comparison.svg`` (the README's picture) only for a full battery at the default
scale and concurrency; any other run writes ``bench/results/failover-comparison.svg`` unless
``--chart`` says otherwise, so a smoke run never replaces the published figure.

``--hung-primary`` runs only the hung-primary comparison instead (``bench/_hung_primary.py``,
issue 12 §1): open- and closed-loop load, p99 and max latency of the requests started in the
10 s after the fault, side by side, in about three minutes.

``--splice`` runs only the mid-stream splice comparison (``bench/_splice.py``, issue 12 §4):
plain LiteLLM, the plugin, and LiteLLM 1.109+'s own ``enable_mid_stream_fallback_continuation``
(``--litellm-python PATH``: an interpreter with that LiteLLM; without one, and on a LiteLLM older
than 1.109, the output says that profile was not run): complete answers, duplicated or missing
text at the splice, ``max_tokens`` kept, time to resume, in under a minute.

Run: ``.venv/bin/python bench/failover_comparison.py`` (``--quick`` for a smoke run; ``--out DIR``
keeps both drill reports, ``DIR/plain/report.html`` and ``DIR/plugin/report.html``; ``--from DIR``
renders the table and chart again from such a directory without running anything).
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:  # python -m bench.failover_comparison
    from bench import _common as common
except ImportError:  # python bench/failover_comparison.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

PROFILES = ("plain", "plugin")  # run in this order
PROFILE_LABELS = {"plain": "plain LiteLLM", "plugin": "LiteLLM + litellm-failover"}
PROFILE_COLOURS = {"plain": "#E69F00", "plugin": "#0072B2"}  # Okabe-Ito orange / blue
FULL_SCALE = 1.0
CONCURRENCY = 8
QUICK_SCENARIOS = ("sigkill_primary", "http_500", "midstream_drop")
QUICK_SCALE = 0.5
STANDBY_AFTER_KILL_GOAL_S = 1.0
FIRST_BACK_S = 1.0
DOCS_CHART = common.REPO_ROOT / "docs" / "failover-comparison.svg"
SCRATCH_CHART = common.RESULTS_DIR / "failover-comparison.svg"
DEFAULT_MARKDOWN = common.RESULTS_DIR / "comparison.md"
MAX_CHART_BYTES = 200_000
DASH = "\u2014"


# --- running ----------------------------------------------------------------------------------


async def run_battery(
    names: Sequence[str] | None, scale: float, concurrency: int, out: Path, settings: str = "tuned"
) -> dict[str, dict[str, Any]]:
    """Both profiles, one after the other, each with its own proxy, nodes and report folder;
    ``settings`` is the plugin profile's (``tuned`` or the plugin's ``default``s), the plain
    profile is the same under both."""
    from litellm_failover.drill.cli import write_reports
    from litellm_failover.drill.options import DrillOptions
    from litellm_failover.drill.progress import make_progress
    from litellm_failover.drill.report_schema import validate
    from litellm_failover.drill.runner import run_drill

    results: dict[str, dict[str, Any]] = {}
    for profile in PROFILES:
        options = DrillOptions(
            scenarios=list(names) if names else None,
            profile=profile,
            out=out / profile,
            duration_scale=scale,
            concurrency=concurrency,
            settings=settings,
        )
        result = await run_drill(options, make_progress(True))
        validate(result)  # a malformed result is a broken bench, not a number
        write_reports(result, out / profile)
        results[profile] = result
    return results


def load_battery(folder: Path) -> dict[str, dict[str, Any]]:
    """Both profiles' ``report.json`` from an earlier ``--out`` folder (``--from``)."""
    from litellm_failover.drill.report_schema import load_json

    results = {profile: load_json(folder / profile / "report.json") for profile in PROFILES}
    for profile, result in results.items():
        if result["profile"] != profile:
            raise SystemExit(
                f"--from: {folder / profile / 'report.json'} holds profile {result['profile']!r}, "
                f"expected {profile!r}"
            )
    return results


def plugin_settings(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Which failover_settings the plugin side ran with; reports from before ``--settings`` were tuned."""
    return results["plugin"]["options"].get("settings") or "tuned"


# --- comparing --------------------------------------------------------------------------------


def first_second_share(entry: Mapping[str, Any]) -> float | None:
    """The restored node's share of the answers sent in the first ``FIRST_BACK_S`` after its first
    answer back, from the 0.5 s failback buckets that start at or after that answer.

    This is what "all at once" vs "a ramp" looks like in numbers: LiteLLM alone puts a tier-1 node
    back at 100 % the moment its cooldown ends; the plugin starts it at its first ramp step.
    """
    back_s, restored_at = entry["time_to_failback_s"], entry["restored_at_s"]
    if back_s is None or restored_at is None:
        return None
    start = restored_at + back_s
    window = [
        point
        for point in entry.get("failback_shares") or []
        if point.get("share") is not None and start <= point["t"] < start + FIRST_BACK_S
    ]
    weights = [float(point.get("n") or 1) for point in window]
    if not window or not sum(weights):
        return None
    return sum(point["share"] * w for point, w in zip(window, weights, strict=True)) / sum(weights)


def _side(entry: Mapping[str, Any]) -> dict[str, Any]:
    requests, errors, broken = entry["requests"], entry["client_errors"], entry["broken_streams"]
    latency = entry.get("latency_ms") or {}
    return {
        "status": entry["status"],
        "skip_reason": entry.get("skip_reason"),
        "requests": requests,
        "served": requests - errors - broken,
        "client_errors": errors,
        "broken_streams": broken,
        "resumed_streams": entry["resumed_streams"],
        "standby_s": entry["time_to_first_standby_s"],
        "failback_s": entry["time_to_failback_s"],
        "ramp_ok": entry["ramp_ok"],
        # "ok", "failed" or "not measured" (the step windows held too few answers); None before
        # the drill reported it, or where no ramp was checked.
        "ramp_check": (entry.get("ramp") or {}).get("verdict"),
        "first_second_share": first_second_share(entry),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "error_samples": list(entry.get("error_samples") or []),
        "failures": list(entry.get("failures") or []),
    }


def compare(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario (in the battery's order) with both sides and what the scenario expects."""
    from litellm_failover.drill.scenarios import SCENARIOS

    plain = {entry["name"]: entry for entry in results["plain"]["scenarios"]}
    plugin = {entry["name"]: entry for entry in results["plugin"]["scenarios"]}
    if list(plain) != list(plugin):
        raise SystemExit(
            f"the two runs covered different scenarios: plain {list(plain)}, plugin {list(plugin)}"
        )
    rows = []
    for name in plugin:
        scenario = SCENARIOS.get(name)
        rows.append(
            {
                "name": name,
                "title": plugin[name]["title"],
                "expects_standby": scenario is not None and scenario.standby is not None,
                "expects_failback": scenario is not None and scenario.failback,
                "checks_ramp": scenario is not None and scenario.check_ramp,
                "is_kill": scenario is not None and scenario.max_standby_s is not None,
                "plain": _side(plain[name]),
                "plugin": _side(plugin[name]),
            }
        )
    return rows


def _ran(row: Mapping[str, Any], profile: str) -> bool:
    return row[profile]["status"] != "skipped"


def totals(rows: Sequence[Mapping[str, Any]], profile: str) -> dict[str, Any]:
    ran = [row[profile] for row in rows if _ran(row, profile)]
    counts = {
        key: sum(side[key] for side in ran)
        for key in ("requests", "served", "client_errors", "broken_streams", "resumed_streams")
    }
    standby = [side["standby_s"] for side in ran if side["standby_s"] is not None]
    failback = [side["failback_s"] for side in ran if side["failback_s"] is not None]
    return {
        **counts,
        "scenarios_run": len(ran),
        "worst_standby_s": max(standby) if standby else None,
        "worst_failback_s": max(failback) if failback else None,
    }


def kill_standby_s(rows: Sequence[Mapping[str, Any]], profile: str) -> float:
    """Worst first standby answer over the kill scenarios; NaN if none ran or the standby never served."""
    times = [row[profile]["standby_s"] for row in rows if row["is_kill"] and _ran(row, profile)]
    if not times or any(t is None for t in times):
        return math.nan
    return float(max(times))


def ramp_misses(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(plugin scenarios with a checked failback whose ramp was not as configured, how many were checked)."""
    checked = [row for row in rows if row["checks_ramp"] and _ran(row, "plugin")]
    return sum(row["plugin"]["ramp_ok"] is not True for row in checked), len(checked)


def ramp_unmeasured(rows: Sequence[Mapping[str, Any]]) -> int:
    """Of ``ramp_misses``' misses, the ones the check could not see (counted as misses: a ramp
    nobody measured is not a ramp that followed the configuration)."""
    return sum(
        row["plugin"]["ramp_check"] == "not measured"
        for row in rows
        if row["checks_ramp"] and _ran(row, "plugin")
    )


# --- formatting -------------------------------------------------------------------------------


def _seconds(value: float | None, expected: bool, unit: str = " s") -> str:
    if value is None:
        return "never" if expected else DASH
    return f"{value:.2f}{unit}"


def _share(value: float | None, expected: bool) -> str:
    if value is None:
        return "never" if expected else DASH
    return f"{value:.0%}".replace("%", " %")


def _pair(row: Mapping[str, Any], plain: str, plugin: str) -> str:
    plain = "skipped" if not _ran(row, "plain") else plain
    plugin = "skipped" if not _ran(row, "plugin") else plugin
    return f"{plain} / {plugin}"


COLUMNS = (
    "scenario",
    "requests served",
    "client errors",
    "broken streams",
    "fault to first standby answer",
    "restore to first answer by the restored node",
    f"its share in its first {FIRST_BACK_S:g} s back",
)


def table_cells(rows: Sequence[Mapping[str, Any]], *, markdown: bool) -> list[list[str]]:
    """The comparison's cells, one row per scenario then the totals, each cell ``plain / plugin``."""
    unit = " s" if markdown else ""  # the terminal table says "s" in its headers, to stay narrow
    out = []
    for row in rows:
        a, b = row["plain"], row["plugin"]
        standby, failback = row["expects_standby"], row["expects_failback"]
        out.append(
            [
                f"`{row['name']}`" if markdown else row["name"],
                _pair(row, f"{a['served']:,}", f"{b['served']:,}"),
                _pair(row, str(a["client_errors"]), str(b["client_errors"])),
                _pair(row, str(a["broken_streams"]), str(b["broken_streams"])),
                _pair(row, _seconds(a["standby_s"], standby, unit), _seconds(b["standby_s"], standby, unit)),
                _pair(
                    row, _seconds(a["failback_s"], failback, unit), _seconds(b["failback_s"], failback, unit)
                ),
                _pair(
                    row,
                    _share(a["first_second_share"], failback),
                    _share(b["first_second_share"], failback),
                ),
            ]
        )
    ta, tb = totals(rows, "plain"), totals(rows, "plugin")

    def bold(text: str) -> str:
        return f"**{text}**" if markdown else text

    worst = "worst " if markdown else ""  # the terminal row's label says it instead

    def times(key: str) -> str:
        return f"{worst}{_seconds(ta[key], False, unit)} / {_seconds(tb[key], False, unit)}"

    out.append(
        [
            bold("all scenarios") if markdown else "all (times: worst)",
            f"{ta['served']:,} / {tb['served']:,}",
            bold(f"{ta['client_errors']} / {tb['client_errors']}"),
            bold(f"{ta['broken_streams']} / {tb['broken_streams']}"),
            times("worst_standby_s"),
            times("worst_failback_s"),
            "",
        ]
    )
    return out


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The README table: one row per scenario, each cell ``plain / plugin``, then the totals."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(rows, markdown=True)]
    return "\n".join(lines) + "\n"


def _one_line(text: str, limit: int = 170) -> str:
    from litellm_failover.redact import Redactor

    flat = re.sub(r"\s+", " ", Redactor()(text, limit=limit)).replace("|", "/").strip()
    return flat.replace("`", "'")


def markdown(
    rows: Sequence[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]], wall_s: float | None
) -> str:
    """The whole comparison page: how it was run, the table, what plain LiteLLM's clients saw."""
    env = common.environment()
    options = results["plugin"]["options"]
    durations = ", ".join(f"{PROFILE_LABELS[p]} {results[p]['duration_s']:.0f} s" for p in PROFILES)
    when = results["plain"]["started_at"][:19].replace("T", " ")
    parts = [
        "<!-- written by bench/failover_comparison.py; every number below is from one run -->",
        f"Measured {when} UTC on {env['cpus']} CPUs (LiteLLM {env['litellm']}, "
        f"litellm-failover {env['litellm_failover']}): plugin settings **{plugin_settings(results)}**, "
        f"duration scale {options['duration_scale']:g}, concurrency {options['concurrency']}; {durations}"
        + (f", {wall_s:.0f} s in all." if wall_s is not None else "."),
        "",
        "Each cell: **plain LiteLLM / LiteLLM + litellm-failover**. Served: answers that arrived whole "
        "and word for word right. Broken stream: text delivered, then an error or a wrong answer. "
        "Times: from the fault to the first answer by the standby, and from the restore to the first "
        "answer by the restored node again. Share: the restored node's part of the answers in its first "
        f"{FIRST_BACK_S:g} s back (100 % is all at once; a primary that shares its tier has 50 % at most). "
        f"never: expected, did not happen; {DASH}: not part of the scenario.",
        "",
        markdown_table(rows),
    ]
    misses, checked = ramp_misses(rows)
    if checked:
        unmeasured = ramp_unmeasured(rows)
        parts.append(
            f"With the plugin, {checked - misses} of {checked} failbacks checked against the configured "
            "ramp (steps read from its `failback_step` events, shares measured per step) followed it"
            + (
                f"; {unmeasured} could not be measured (too few answers inside a step's window).\n"
                if unmeasured
                else ".\n"
            )
        )
    samples = [
        (row["name"], row["plain"]["error_samples"][0])
        for row in rows
        if row["plain"]["error_samples"] and _ran(row, "plain")
    ]
    if samples:
        parts.append("What plain LiteLLM's clients saw most often, per scenario:\n")
        parts += [f"- `{name}`: {_one_line(sample)}" for name, sample in samples]
        parts.append("")
    skipped = [
        f"- `{row['name']}` skipped ({profile}): {row[profile]['skip_reason']}"
        for row in rows
        for profile in PROFILES
        if not _ran(row, profile)
    ]
    if skipped:
        parts += ["Skipped:\n", *skipped, ""]
    return "\n".join(parts)


def print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    common.print_rows(
        "drill battery, each cell plain LiteLLM / LiteLLM + litellm-failover",
        ["scenario", "served", "client errors", "broken streams", "fault to standby, s",
         "restore to failback, s", f"share, first {FIRST_BACK_S:g} s back"],
        table_cells(rows, markdown=False),
    )  # fmt: skip
    failures = [(row["name"], f) for row in rows for f in row["plugin"]["failures"]]
    if failures:
        print("plugin profile, scenario failures:")
        for name, failure in failures:
            print(f"  {name}: {failure}")


# --- the chart --------------------------------------------------------------------------------


CHART_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "failover-comparison",
    "font.size": 9,
    "font.family": "sans-serif",
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
}


def chart_svg(rows: Sequence[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]]) -> str:
    """The chart as SVG text: text kept as text, no date in the metadata and a fixed hash salt, so
    the file stays small and two renders of one result are byte for byte equal."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    with matplotlib.rc_context(CHART_RC):
        FigureCanvasSVG(chart_figure(rows, results)).print_svg(buf, metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def chart_figure(rows: Sequence[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]]) -> Any:
    """Four panels sharing the scenario axis: failed requests, fault to standby, restore to failback,
    and the restored node's share in its first second back (all at once vs a ramp).

    matplotlib's object API only (no pyplot, no global backend switch); call inside
    ``matplotlib.rc_context(CHART_RC)``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    shown = [row for row in rows if _ran(row, "plain") and _ran(row, "plugin")]
    x = list(range(len(shown)))
    width = 0.38
    offsets = {"plain": -width / 2, "plugin": width / 2}
    fig = Figure(figsize=(10, 10.5), dpi=100, layout="constrained")
    failed_ax, standby_ax, failback_ax, share_ax = fig.subplots(4, 1, sharex=True)
    for profile in PROFILES:
        xs = [i + offsets[profile] for i in x]
        errors = [row[profile]["client_errors"] for row in shown]
        broken = [row[profile]["broken_streams"] for row in shown]
        colour = PROFILE_COLOURS[profile]
        failed_ax.bar(xs, errors, width, color=colour, edgecolor=colour)
        top = failed_ax.bar(xs, broken, width, bottom=errors, color="white", edgecolor=colour, hatch="////")
        failed_ax.bar_label(top, labels=[str(e + b) for e, b in zip(errors, broken, strict=True)],
                            fontsize=8, padding=2, color=colour)  # fmt: skip
        _bars(standby_ax, shown, profile, "standby_s", "expects_standby", xs, width, "{:.2f}")
        _bars(failback_ax, shown, profile, "failback_s", "expects_failback", xs, width, "{:.2f}")
        _bars(share_ax, shown, profile, "first_second_share", "expects_failback", xs, width, "{:.0%}")
    peak = max([r[p]["client_errors"] + r[p]["broken_streams"] for r in shown for p in PROFILES] or [0])
    failed_ax.set_ylim(0, max(1, peak) * 1.2)
    failed_ax.set_ylabel("requests")
    failed_ax.set_title("Requests that failed at the client: client errors (solid) + broken streams "
                        "(hatched)", loc="left", fontsize=10)  # fmt: skip
    _headroom(standby_ax, shown, "standby_s", STANDBY_AFTER_KILL_GOAL_S)
    standby_ax.axhline(STANDBY_AFTER_KILL_GOAL_S, color="#555555", linestyle="--", linewidth=0.9)
    goal = f"goal after a kill: {STANDBY_AFTER_KILL_GOAL_S:g} s"
    standby_ax.text(-0.55, STANDBY_AFTER_KILL_GOAL_S, goal, ha="left", va="bottom", fontsize=7.5,
                    color="#555555")  # fmt: skip
    standby_ax.set_ylabel("seconds")
    standby_ax.set_title("Fault to the first answer by the standby", loc="left", fontsize=10)
    _headroom(failback_ax, shown, "failback_s", 1.0)
    failback_ax.set_ylabel("seconds")
    failback_ax.set_title(_failback_title(results), loc="left", fontsize=10)
    share_ax.set_ylim(0, 1.25)
    share_ax.set_yticks([0, 0.5, 1.0])
    share_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    share_ax.set_ylabel("share of answers")
    share_ax.set_title(f"Restored node's share of the answers in its first {FIRST_BACK_S:g} s back",
                       loc="left", fontsize=10)  # fmt: skip
    share_ax.set_xticks(x, [row["name"] for row in shown], rotation=18, ha="right")
    share_ax.set_xlim(-0.6, len(shown) - 0.4)
    for ax in (failed_ax, standby_ax, failback_ax, share_ax):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", color="#e3e3e3", linewidth=0.6)
        ax.set_axisbelow(True)
    handles = [Patch(color=PROFILE_COLOURS[p], label=PROFILE_LABELS[p]) for p in PROFILES]
    handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="////", label="broken streams"))
    fig.legend(handles=handles, loc="outside upper center", ncols=3, frameon=False, fontsize=9)
    options = results["plugin"]["options"]
    footer = (
        f"bench/failover_comparison.py, one run: plugin settings {plugin_settings(results)}, "
        f"duration scale {options['duration_scale']:g}, "
        f"concurrency {options['concurrency']}, LiteLLM {common.environment()['litellm']}; "
        "n/a: not part of the scenario, never: expected but did not happen"
    )
    fig.supxlabel(footer, x=0.995, ha="right", fontsize=7, color="#777777")  # laid out, unlike fig.text
    return fig


def _bars(
    ax: Any,
    shown: Sequence[Mapping[str, Any]],
    profile: str,
    key: str,
    expects: str,
    xs: list[float],
    width: float,
    fmt: str,
) -> None:
    """Bars for one measured value; where there is no bar, a word says why (never / n/a)."""
    colour = PROFILE_COLOURS[profile]
    values = [row[profile][key] for row in shown]
    bars = ax.bar(xs, [v or 0.0 for v in values], width, color=colour)
    labels = [
        fmt.format(value) if value is not None else ("never" if row[expects] else "n/a")
        for row, value in zip(shown, values, strict=True)
    ]
    ax.bar_label(bars, labels=labels, fontsize=7.5, padding=2, color=colour)


def _headroom(ax: Any, shown: Sequence[Mapping[str, Any]], key: str, floor: float) -> None:
    peak = max([v for row in shown for p in PROFILES if (v := row[p][key]) is not None] or [floor])
    ax.set_ylim(0, max(peak, floor) * 1.25)


def _failback_title(results: Mapping[str, Mapping[str, Any]]) -> str:
    plain = results["plain"]["config"].get("router_settings", {}).get("cooldown_time")
    failback = results["plugin"]["config"].get("failover_settings", {}).get("failback", {})
    steps = "\u2192".join(f"{s:g}" for s in failback.get("ramp_steps", []))
    text = "Restore to the first answer by the restored node"
    if plain is not None and failback:
        text += (
            f"\nplain: back when cooldown_time ({plain:g} s) ends, all traffic at once; plugin: after a "
            f"hold-down of {failback.get('hold_down_s', 0):g} s, ramped {steps} %"
        )
    return text


# --- the bench --------------------------------------------------------------------------------


def measure(
    results: Mapping[str, Mapping[str, Any]], wall_s: float | None, markdown_path: Path, chart_path: Path
) -> dict[str, Any]:
    rows = compare(results)
    ta, tb = totals(rows, "plain"), totals(rows, "plugin")
    misses, checked = ramp_misses(rows)
    page = markdown(rows, results, wall_s)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(page)
    svg = chart_svg(rows, results)
    chart_path.parent.mkdir(parents=True, exist_ok=True)
    chart_path.write_text(svg)
    chart_bytes = len(svg.encode())
    if chart_bytes > MAX_CHART_BYTES:
        print(f"warning: {chart_path} is {chart_bytes:,} bytes, over {MAX_CHART_BYTES:,}", file=sys.stderr)

    def num(value: float | None) -> float:
        return math.nan if value is None else float(value)

    metrics: dict[str, float] = {}
    for profile, t in (("plain", ta), ("plugin", tb)):
        metrics.update(
            {
                f"{profile}_requests": t["requests"],
                f"{profile}_served": t["served"],
                f"{profile}_client_errors": t["client_errors"],
                f"{profile}_broken_streams": t["broken_streams"],
                f"{profile}_resumed_streams": t["resumed_streams"],
                f"{profile}_worst_standby_s": num(t["worst_standby_s"]),
                f"{profile}_worst_failback_s": num(t["worst_failback_s"]),
                f"{profile}_kill_standby_s": kill_standby_s(rows, profile),
                f"{profile}_duration_s": float(results[profile]["duration_s"]),
            }
        )
    metrics["plugin_ramp_misses"] = misses
    if wall_s is not None:
        metrics["wall_s"] = wall_s
    goals = [
        common.Goal("plugin client-visible errors, whole battery", tb["client_errors"], "<=", 0),
        common.Goal("plugin broken streams, whole battery", tb["broken_streams"], "<=", 0),
        common.Goal(
            "plugin first standby answer after a kill, s",
            kill_standby_s(rows, "plugin"),
            "<=",
            STANDBY_AFTER_KILL_GOAL_S,
        ),
        common.Goal(f"plugin failbacks off the configured ramp (of {checked})", misses, "<=", 0),
    ]
    details = {
        "scenarios": rows,
        "totals": {"plain": ta, "plugin": tb},
        "options": results["plugin"]["options"],
        "plain_router_settings": results["plain"]["config"].get("router_settings", {}),
        "plugin_settings": plugin_settings(results),
        "plugin_failover_settings": results["plugin"]["config"].get("failover_settings", {}),
        "markdown": str(markdown_path),
        "chart": str(chart_path),
        "chart_bytes": chart_bytes,
    }
    return common.result("failover_comparison", metrics, goals, details)


def _scenario_names(p: Any, text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        p.error(f"--scenarios names no scenario: {text!r}")
    return names


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=None, help="comma-separated scenario names (default: all)")
    p.add_argument(
        "--duration-scale",
        type=float,
        default=None,
        help=f"default {FULL_SCALE:g} ({QUICK_SCALE:g} with --quick)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help=f"concurrent client requests (default {CONCURRENCY})",
    )
    p.add_argument(
        "--settings",
        default="tuned",
        help="the plugin profile's failover_settings: tuned (default, scaled to the drill's short phases) "
        "or default (the plugin's own defaults: a run of about 15 minutes); plain LiteLLM is the same",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="keep both drill reports here (default: a temporary folder)"
    )
    p.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        help="render from an earlier --out folder, run nothing",
    )
    p.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help=f"default {DEFAULT_MARKDOWN}")
    p.add_argument(
        "--chart",
        type=Path,
        default=None,
        help=f"default {DOCS_CHART} for a full default run, else {SCRATCH_CHART}",
    )
    p.add_argument(
        "--hung-primary",
        action="store_true",
        help="run only the hung-primary open/closed-loop comparison (bench/_hung_primary.py)",
    )
    p.add_argument(
        "--hung-timeouts",
        default="usual,stock",
        help="with --hung-primary: the deployment timeouts to run, 'usual' (timeout 30, stream_timeout 10), "
        "'stock' (LiteLLM's default) or both (default: usual,stock)",
    )
    p.add_argument(
        "--splice",
        action="store_true",
        help="run only the mid-stream splice comparison, three profiles (bench/_splice.py)",
    )
    p.add_argument(
        "--litellm-python",
        default=None,
        help="with --splice: a Python with LiteLLM 1.109+ for the litellm_continuation profile",
    )
    args = p.parse_args()  # fmt: skip
    if args.hung_primary:
        return _hung_primary(args)
    if args.splice:
        return _splice(args)

    names = _scenario_names(p, args.scenarios)
    if names is None and args.quick:
        names = list(QUICK_SCENARIOS)
    scale = (
        args.duration_scale
        if args.duration_scale is not None
        else (QUICK_SCALE if args.quick else FULL_SCALE)
    )
    from litellm_failover.drill.options import DrillInputError, DrillOptions

    try:  # validate before the first minute of running
        DrillOptions(
            scenarios=names, duration_scale=scale, concurrency=args.concurrency, settings=args.settings
        ).selected()
    except DrillInputError as exc:
        p.error(str(exc))

    wall_s: float | None = None
    if args.from_dir is not None:
        from litellm_failover.drill.report_schema import DrillReportError

        try:
            results = load_battery(args.from_dir)
        except DrillReportError as exc:
            p.error(f"--from {args.from_dir}: {exc}")
    else:
        started = time.monotonic()
        if args.out is not None:
            results = asyncio.run(
                run_battery(names, scale, args.concurrency, args.out.resolve(), args.settings)
            )
        else:
            with tempfile.TemporaryDirectory(prefix="bench-failover-comparison-") as tmp:
                results = asyncio.run(run_battery(names, scale, args.concurrency, Path(tmp), args.settings))
        wall_s = time.monotonic() - started

    options = results["plugin"]["options"]
    full = (
        options["scenarios"] == list(_all_names())
        and options["duration_scale"] == FULL_SCALE
        and options["concurrency"] == CONCURRENCY
        and plugin_settings(results) == "tuned"  # the README's picture is the tuned run's
    )
    chart = args.chart or (DOCS_CHART if full else SCRATCH_CHART)
    data = measure(results, wall_s, args.markdown, chart)
    print_table(data["details"]["scenarios"])
    print(f"markdown: {args.markdown}\nchart: {chart} ({data['details']['chart_bytes']:,} bytes)")
    if args.out is not None:
        print(
            f"drill reports: {args.out / 'plain' / 'report.html'} and {args.out / 'plugin' / 'report.html'}"
        )
    if wall_s is not None:
        print(f"wall time: {wall_s:.0f} s")
    return common.finish(args, data)


def _hung_primary(args: Any) -> int:
    try:  # python -m bench.failover_comparison
        from bench import _hung_primary as hung
    except ImportError:  # python bench/failover_comparison.py
        import _hung_primary as hung  # type: ignore[no-redef]

    timeouts = [name.strip() for name in args.hung_timeouts.split(",") if name.strip()]
    unknown = sorted(set(timeouts) - set(hung.TIMEOUTS))
    if not timeouts or unknown:
        raise SystemExit(
            f"--hung-timeouts: choose from {', '.join(hung.TIMEOUTS)} (got {args.hung_timeouts!r})"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-hung-primary-") as tmp:
        results = asyncio.run(hung.run_all(Path(tmp), timeouts))
    return common.finish(args, hung.report(results, time.monotonic() - started))


def _splice(args: Any) -> int:
    try:  # python -m bench.failover_comparison
        from bench import _splice as splice
    except ImportError:  # python bench/failover_comparison.py
        import _splice as splice  # type: ignore[no-redef]

    return common.finish(args, splice.run(args.litellm_python))


def _all_names() -> Sequence[str]:
    from litellm_failover.drill.scenarios import SCENARIO_NAMES

    return SCENARIO_NAMES


if __name__ == "__main__":
    raise SystemExit(main())
