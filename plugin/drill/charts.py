"""One drill scenario drawn as an SVG chart, for inlining into the self-contained HTML report.

The chart answers the questions a reader of a failover drill asks at a glance: who served the
traffic over time (share per deployment, stacked), when the client saw errors or broken streams,
and where the fault, the failover, the restore and the failback happened (vertical lines).

matplotlib is used through its object API only (``Figure`` + ``FigureCanvasSVG``): no pyplot, no
global backend switch, so importing the report inside a running proxy or a test session changes
nothing else. Text stays text in the SVG (``svg.fonttype: none``, set only for the duration of one
render) which keeps a nine-scenario report small and lets the browser pick the font.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

# Colour-blind friendly (Okabe-Ito first, then tab10 leftovers); one per deployment, fixed for the
# whole report so "p1" has the same colour in every scenario.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#8c564b",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#9467bd",
)
MARKER_STYLE: dict[str, tuple[str, str]] = {
    "fault": ("#c0392b", "-"),
    "restore": ("#27ae60", "-"),
    "failover": ("#d35400", "--"),
    "failback": ("#2c3e8f", "--"),
    "panic": ("#000000", ":"),
}
ERROR_COLOUR = "#c0392b"
BROKEN_COLOUR = "#6c3483"
NOTHING_SERVED_COLOUR = "#d5d8dc"
MAX_LABEL_CHARS = 36
_XML_PROLOGUE = re.compile(r"\A\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)


def deployment_colours(deployments: Sequence[tuple[str, int | None]]) -> dict[str, str]:
    """Assign colours by (tier, id) so primaries get the first colours in every report."""
    ordered = sorted(set(deployments), key=lambda d: (d[1] if d[1] is not None else 1_000_000, d[0]))
    colours: dict[str, str] = {}
    for dep_id, _tier in ordered:
        if dep_id not in colours:
            colours[dep_id] = PALETTE[len(colours) % len(PALETTE)]
    return colours


def shares(served: Mapping[str, Sequence[float]], length: int) -> dict[str, list[float]]:
    """Per bucket, each deployment's fraction of what was served; an empty bucket is all zeros.

    An empty bucket stays a visible gap instead of being smeared over by interpolation, which is
    exactly what a reader wants to see during an outage.
    """
    totals = [sum(float(series[i]) for series in served.values()) for i in range(length)]
    return {
        dep: [float(series[i]) / totals[i] if totals[i] > 0 else 0.0 for i in range(length)]
        for dep, series in served.items()
    }


def _plain(text: object) -> str:
    """Keep matplotlib from reading ``$`` as mathtext or hiding a legend entry that starts with ``_``."""
    plain = str(text).replace("$", r"\$")
    return " " + plain if plain.startswith("_") else plain


def _clip(label: object, limit: int = MAX_LABEL_CHARS) -> str:
    """A rotated label longer than the panel is tall would be cut off; the page lists it in full."""
    text = str(label)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _label_positions(times: Sequence[float], span: float, min_gap_frac: float = 0.028) -> list[float]:
    """Spread marker labels that would overlap (a fault and its failover are often 0.3 s apart)."""
    gap = span * min_gap_frac
    placed: list[float] = []
    for t in times:
        x = t if not placed or t - placed[-1] >= gap else placed[-1] + gap
        placed.append(x)
    return placed


def scenario_svg(scenario: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    """Render one scenario's timeline and markers; returns an ``<svg>`` element as a string."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig = _figure(scenario, colours)
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    return _XML_PROLOGUE.sub("", buf.getvalue(), count=1)


_RC = {"svg.fonttype": "none", "font.size": 9, "font.family": "sans-serif"}


def _figure(scenario: Mapping[str, Any], colours: Mapping[str, str]) -> Figure:
    timeline = scenario["timeline"]
    t = [float(x) for x in timeline["t"]]
    bucket = float(timeline["bucket_s"])
    markers = [m for m in scenario.get("markers") or [] if m.get("t") is not None]
    markers.sort(key=lambda m: float(m["t"]))

    end = max([t[-1] + bucket if t else 1.0] + [float(m["t"]) + bucket for m in markers])
    start = min([0.0] + t[:1] + [float(m["t"]) for m in markers])

    fig = Figure(figsize=(9.6, 4.2), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    _draw_shares(top, scenario, colours, t, bucket)
    _draw_errors(bottom, t, bucket, timeline)
    top.set_xlim(start, end)
    _draw_markers(top, bottom, markers, max(end - start, 1e-9))
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    return fig


def _draw_shares(
    ax: Axes, scenario: Mapping[str, Any], colours: Mapping[str, str], t: list[float], bucket: float
) -> None:
    served: Mapping[str, Sequence[float]] = scenario["timeline"]["served"]
    rank = {d: i for i, d in enumerate(colours)}
    order = sorted(served, key=lambda d: (rank.get(d, len(rank)), d))
    share = shares({d: served[d] for d in order}, len(t))
    layers = [(_plain(d), colours.get(d, "#999999"), share[d]) for d in order]
    # A bucket where nobody served anything is the outage itself: draw it, don't leave white.
    empty = [0.0 if any(float(served[d][i]) for d in order) else 1.0 for i in range(len(t))]
    if any(empty):
        layers.append(("nothing served", NOTHING_SERVED_COLOUR, empty))
    # Step-shaped stack: a bucket's share holds for the whole bucket, so the area shows what happened
    # rather than a slope between bucket centres that never existed.
    if t:
        xs = [x + (bucket if edge else 0.0) for x in t for edge in (0, 1)]
        ys = [[v for v in values for _ in (0, 1)] for _, _, values in layers]
        ax.stackplot(
            xs,
            ys,
            labels=[n for n, _, _ in layers],
            colors=[c for _, c, _ in layers],
            alpha=0.85,
            linewidth=0,
        )
    ramp = [
        (float(p["t"]), float(p["share"]))
        for p in scenario.get("failback_shares") or []
        if p.get("t") is not None and p.get("share") is not None
    ]
    if ramp:
        ax.plot(
            [p[0] for p in ramp],
            [p[1] for p in ramp],
            color="#111111",
            marker="o",
            markersize=3.5,
            linewidth=1.2,
            label="failback share",
        )
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("traffic share")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def _draw_errors(ax: Axes, t: list[float], bucket: float, timeline: Mapping[str, Any]) -> None:
    errors = [float(x) for x in timeline["errors"]]
    broken = [float(x) for x in timeline["broken"]]
    # Only non-zero buckets become bars: a quiet 2-minute scenario must not cost 480 empty <path>s.
    err = [i for i, v in enumerate(errors) if v]
    brk = [i for i, v in enumerate(broken) if v]
    width = bucket * 0.9
    ax.bar([t[i] for i in err], [errors[i] for i in err], width=width, align="edge", color=ERROR_COLOUR)
    ax.bar([t[i] for i in brk], [broken[i] for i in brk], width=width, align="edge", color=BROKEN_COLOUR,
           bottom=[errors[i] for i in brk])  # fmt: skip
    peak = max([a + b for a, b in zip(errors, broken, strict=True)] or [0.0])
    ax.set_ylim(0, max(peak * 1.15, 1.0))
    ax.set_ylabel("per bucket")
    ax.set_xlabel(f"seconds since scenario start (bucket {bucket:g} s)")
    # Legend from explicit handles: an empty bar container would show matplotlib's default colour.
    handles = [
        Patch(color=ERROR_COLOUR, label="client errors"),
        Patch(color=BROKEN_COLOUR, label="broken streams"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    if not err and not brk:
        ax.text(0.5, 0.5, "no client errors, no broken streams", transform=ax.transAxes, ha="center",
                va="center", fontsize=8, color="#1e8449")  # fmt: skip


def _draw_markers(top: Axes, bottom: Axes, markers: list[Mapping[str, Any]], span: float) -> None:
    label_x = _label_positions([float(m["t"]) for m in markers], span)
    for m, lx in zip(markers, label_x, strict=True):
        colour, style = MARKER_STYLE.get(str(m.get("kind")), ("#555555", "-"))
        for ax in (top, bottom):
            ax.axvline(float(m["t"]), color=colour, linestyle=style, linewidth=1.3)
        top.text(
            lx,
            0.98,
            f"{_plain(_clip(m['label']))} {float(m['t']):.2f} s",
            rotation=90,
            ha="right",
            va="top",
            fontsize=7.5,
            color=colour,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.0},
            clip_on=True,
        )
