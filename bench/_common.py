"""Shared plumbing for the benches: environment, statistics, goals, tables and JSON results.

Importing this module sets ``LITELLM_LOCAL_MODEL_COST_MAP`` before anything imports LiteLLM
(otherwise the import tries to fetch the cost map over the network), which is why every bench
imports it first and imports LiteLLM and ``litellm_failover`` lazily, inside functions.

Every bench reports the same shape, so ``run_all`` can put them in one table without knowing them::

    {"bench": str, "metrics": {name: number}, "goals": [Goal...], "details": {...}, "ok": bool}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True, slots=True)
class Goal:
    """One target a bench checks: ``value <op> target``. Goals report, they do not fail a run."""

    name: str
    value: float
    op: str  # "<=", ">=", "<"
    target: float

    @property
    def ok(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.op == "<=":
            return self.value <= self.target
        if self.op == ">=":
            return self.value >= self.target
        if self.op == "<":
            return self.value < self.target
        raise ValueError(f"unknown goal operator {self.op!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        return f"{self.op} {self.target:g}"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no data rather than a crash."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: Iterable[float]) -> float:
    data = list(values)
    return float(statistics.median(data)) if data else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def environment() -> dict[str, Any]:
    """What a reader needs to compare two result files: the machine and the versions."""
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "litellm": version("litellm"),
        "litellm_failover": version("litellm-failover"),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def result(
    bench: str, metrics: dict[str, float], goals: list[Goal], details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "bench": bench,
        "metrics": metrics,
        "goals": [g.as_dict() for g in goals],
        "ok": all(g.ok for g in goals),
        "details": details or {},
        "environment": environment(),
    }


def parser(description: str) -> argparse.ArgumentParser:
    """Every bench takes ``--json PATH`` (how run_all collects results) and ``--quick``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this path")
    p.add_argument("--quick", action="store_true", help="fewer iterations: a smoke run, not a measurement")
    return p


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fmt(value: float, digits: int = 3) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def print_goals(title: str, goals: Sequence[Goal]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("goal")
    table.add_column("measured", justify="right")
    table.add_column("target", justify="right")
    table.add_column("ok", justify="center")
    for goal in goals:
        table.add_row(goal.name, fmt(goal.value), goal.describe(), _mark(goal.ok))
    _console().print(table)


def print_rows(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, text_columns: int = 1
) -> None:
    """A rich table; the first ``text_columns`` are labels (left), the rest numbers (right)."""
    from rich.table import Table

    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < text_columns else "right")
    for row in rows:
        table.add_row(*(cell if isinstance(cell, str) else fmt(cell) for cell in row))
    _console().print(table)


def _console() -> Any:
    """Wide enough for the tables even when stdout is a pipe (run_all, CI logs), where rich
    would otherwise assume 80 columns and cut the numbers."""
    from rich.console import Console

    return Console(width=max(120, shutil.get_terminal_size((120, 24)).columns))


def _mark(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]NO[/red]"


def finish(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Write JSON when asked. The exit status is 0 even when a goal is missed: the numbers are the
    product, and run_all must go on to the next bench; a crash (a broken sanity check) is not 0."""
    if args.json is not None:
        write_json(args.json, data)
    print_goals(
        f"{data['bench']}: goals", [Goal(g["name"], g["value"], g["op"], g["target"]) for g in data["goals"]]
    )
    sys.stdout.flush()
    return 0
