"""Run every bench, one at a time, and write ``bench/results/latest.json``.

Each bench runs in its own Python process: they register LiteLLM callbacks, start proxies and
fake nodes, and measure this process's CPU, so sharing one interpreter would let one bench's
leftovers skew the next. Each has its own time limit; a bench that crashes or overruns is
recorded as such and the others still run.

Run: ``.venv/bin/python bench/run_all.py`` or ``.venv/bin/python -m bench`` (``--quick``,
``--only NAME``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # python -m bench
    from bench import _common as common
except ImportError:  # python bench/run_all.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

# (name, time limit in seconds). The limits are generous ceilings, not expected durations:
# routing ~1 min, proxy ~1 min, metrics parse ~5 s, probe ~1.5 min (two topologies) on a 2-core
# machine; fleet propagation ~5 s (it needs the local Redis).
BENCHES: tuple[tuple[str, float], ...] = (
    ("routing_cost", 240.0),
    ("proxy_overhead", 300.0),
    ("metrics_parse", 120.0),
    ("probe_cpu", 300.0),
    ("fleet_propagation", 180.0),
    ("writer_throughput", 180.0),  # ~20 s; the PostgreSQL half needs the local PostgreSQL
    ("session_storage", 300.0),  # ~1.5 min; PostgreSQL when it answers, else SQLite
    ("call_costs", 120.0),  # ~15 s: calls that must never wait, and the drill report's render
    ("first_request_stall", 420.0),  # ~3-4 min: 12 fresh processes, each importing LiteLLM
    ("failover_comparison", 1200.0),  # the drill battery twice: 5-6 min; --quick ~1.5 min
)


def run_one(name: str, limit_s: float, quick: bool) -> dict[str, Any]:
    script = common.BENCH_DIR / f"{name}.py"
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(script), "--json", str(out)] + (["--quick"] if quick else [])
        started = time.monotonic()
        try:
            completed = subprocess.run(command, cwd=common.REPO_ROOT, timeout=limit_s, check=False)
            returncode: int | None = completed.returncode
        except subprocess.TimeoutExpired:
            returncode = None
        elapsed = time.monotonic() - started
        if returncode == 0 and out.exists():
            data = json.loads(out.read_text())
            data["elapsed_s"] = elapsed
            return data
    reason = f"timed out after {limit_s:.0f} s" if returncode is None else f"exited with {returncode}"
    return {"bench": name, "error": reason, "ok": False, "metrics": {}, "goals": [], "elapsed_s": elapsed}


def summary(results: list[dict[str, Any]]) -> None:
    rows: list[list[Any]] = []
    for data in results:
        if "error" in data:
            rows.append([data["bench"], "[red]failed to run[/red]", data["error"], "", "[red]NO[/red]"])
            continue
        for goal in data["goals"]:
            value = goal["value"] if goal["value"] is not None else float("nan")
            ok = "[green]yes[/green]" if goal["ok"] else "[red]NO[/red]"
            rows.append([data["bench"], goal["name"], value, f"{goal['op']} {goal['target']:g}", ok])
    common.print_rows(
        "litellm-failover benches: summary",
        ["bench", "goal", "measured", "target", "ok"],
        rows,
        text_columns=2,
    )
    timings = ", ".join(f"{d['bench']} {d.get('elapsed_s', 0):.0f} s" for d in results)
    print(f"wall time: {timings}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer iterations")
    parser.add_argument("--only", choices=[name for name, _ in BENCHES], action="append", default=None)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "latest.json")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for name, limit_s in BENCHES:
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name} ===", flush=True)
        results.append(run_one(name, limit_s, args.quick))
    common.write_json(
        args.out,
        {
            "environment": common.environment(),
            "quick": args.quick,
            "ok": all(r["ok"] for r in results),
            "benches": {r["bench"]: r for r in results},
        },
    )
    print()
    summary(results)
    print(f"written: {args.out}")
    # A missed goal is a result, not a failure of the run; a bench that could not run is.
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
