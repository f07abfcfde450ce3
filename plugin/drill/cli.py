"""``litellm-failover chaos drill``: options, the run, report.json / report.html, exit code.

Exit codes: 0 every scenario passed (skipped ones don't fail), 1 a scenario failed (or the drill
could not set itself up), 2 bad input (the message names the option and the value).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# What a missing matplotlib (the report's charts) costs and how to get it.
DRILL_EXTRA_HINT = "pip install 'litellm-failover[drill]'"


def register(chaos_subparsers: Any) -> None:
    """Add ``drill`` under ``chaos``; called by ``litellm_failover.cli.chaos``."""
    from litellm_failover.drill.scenarios import SCENARIOS

    # The scenario list comes from the battery itself, so --help cannot name one that is gone.
    listing = "\n".join(f"  {name:<18} {scenario.title}" for name, scenario in SCENARIOS.items())
    parser = chaos_subparsers.add_parser(
        "drill",
        help="Run the failover drill battery against fake vLLM servers through a real LiteLLM proxy.",
        description=(
            "Runs fault scenarios under concurrent mixed load through a real LiteLLM proxy, writes "
            "report.json and report.html, and exits 1 if a request was lost or a stream broke (2 on "
            "bad input)."
        ),
        epilog=f"scenarios (--scenarios, in the order they run):\n{listing}\n\n"
        f"report.html's charts need matplotlib: {DRILL_EXTRA_HINT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=handle)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from litellm_failover.drill.profiles import PROFILES, SETTINGS
    from litellm_failover.drill.scenarios import SCENARIO_NAMES

    # Values are checked by DrillOptions, not argparse, so a bad one exits 2 with our own message
    # naming the option; the help lists the same constants that check uses.
    parser.add_argument(
        "--scenarios",
        default=None,
        metavar="NAME[,NAME...]",
        help=f"Comma-separated scenario names (default: all): {', '.join(SCENARIO_NAMES)}.",
    )
    parser.add_argument(
        "--profile",
        default="plugin",
        metavar="PROFILE",
        help=f"One of {', '.join(PROFILES)} (default plugin; plain is LiteLLM alone).",
    )
    parser.add_argument(
        "--settings",
        default=SETTINGS[0],
        metavar="SETTINGS",
        help=(
            f"The plugin profile's failover_settings, one of {', '.join(SETTINGS)} (default {SETTINGS[0]}: "
            "scaled to the drill's short phases; default: the plugin's own defaults, only the database "
            "set, a run of about 15 minutes). The plain profile is the same under both."
        ),
    )
    parser.add_argument("--out", default="./drill-report", help="Report directory (default ./drill-report).")
    parser.add_argument(
        "--duration-scale", default="1.0", help="Multiply every phase and the ramp times (default 1.0)."
    )
    parser.add_argument("--concurrency", default="8", help="Concurrent client requests (default 8).")
    parser.add_argument("--no-progress", action="store_true", help="No progress display.")
    parser.add_argument("--json", action="store_true", help="Print the result JSON on stdout.")


def options_from_args(args: argparse.Namespace) -> Any:
    """Build and validate ``DrillOptions``; raises ``DrillInputError`` naming the bad option."""
    from litellm_failover.drill.options import DrillInputError, DrillOptions

    try:
        scale = float(args.duration_scale)
    except ValueError:
        scale = math.nan
    if not math.isfinite(scale):
        raise DrillInputError(
            f"--duration-scale must be a number from 0.05 to 20, got {args.duration_scale!r}"
        )
    try:
        concurrency = int(str(args.concurrency).strip())
    except ValueError:
        raise DrillInputError(
            f"--concurrency must be an integer from 1 to 256, got {args.concurrency!r}"
        ) from None
    names = None
    if args.scenarios is not None:
        names = [name.strip() for name in str(args.scenarios).split(",") if name.strip()]
        if not names:
            raise DrillInputError(f"--scenarios names no scenario: {args.scenarios!r}")
    options = DrillOptions(
        scenarios=names,
        profile=str(args.profile),
        out=Path(args.out),
        duration_scale=scale,
        concurrency=concurrency,
        settings=str(args.settings),
    )
    options.selected()  # validates every option
    return options


def write_reports(result: dict[str, Any], out: Path) -> tuple[Path, Path | None, str | None]:
    """report.json always; report.html when the report module is there (else why not)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    from litellm_failover.drill.report_schema import DrillReportError, write_json

    try:
        write_json(result, json_path)
    except DrillReportError as exc:  # keep the record anyway, and say what is wrong with it
        json_path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
        return json_path, None, f"report.json does not match the schema: {exc}"
    try:
        from litellm_failover.drill.report import write_html
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] == "matplotlib":
            return (
                json_path,
                None,
                f"report.html not written: its charts need matplotlib ({DRILL_EXTRA_HINT})",
            )
        return json_path, None, f"report.html not written: the report module is missing ({exc})"
    try:
        return json_path, write_html(result, out / "report.html"), None
    except Exception as exc:  # the JSON is the record; a rendering problem must not hide it
        return json_path, None, f"report.html not written: {type(exc).__name__}: {exc}"


async def handle(args: argparse.Namespace) -> int:
    from litellm_failover.drill.options import DrillInputError
    from litellm_failover.drill.progress import make_progress
    from litellm_failover.drill.runner import DrillSetupError, run_drill

    try:
        options = options_from_args(args)
    except DrillInputError as exc:
        print(f"litellm-failover chaos drill: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    progress = make_progress(not args.no_progress)
    try:
        result = await run_drill(options, progress)
    except DrillSetupError as exc:
        progress.close()
        print(f"litellm-failover chaos drill: could not set up the drill: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.close()
    json_path, html_path, note = write_reports(result, Path(options.out))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print_summary(result)
    print(f"report: {json_path}" + (f" and {html_path}" if html_path else ""), file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    return EXIT_PASSED if result["passed"] else EXIT_FAILED


def _print_summary(result: dict[str, Any]) -> None:
    from litellm_failover.drill.ramp import ramp_verdict

    header = f"{'scenario':<18} {'status':<8} {'requests':>8} {'errors':>6} {'broken':>6} {'resumed':>7} "
    header += f"{'standby_s':>9} {'failback_s':>10} ramp"
    verdict = "PASSED" if result["passed"] else "FAILED"
    settings = (result.get("options") or {}).get("settings")
    with_settings = f" ({settings} settings)" if settings else ""
    print(f"profile {result['profile']}{with_settings}: {verdict} in {result['duration_s']}s")
    print(header)
    for sc in result["scenarios"]:
        print(
            f"{sc['name']:<18} {sc['status']:<8} {sc['requests']:>8} {sc['client_errors']:>6} "
            f"{sc['broken_streams']:>6} {sc['resumed_streams']:>7} {_num(sc['time_to_first_standby_s']):>9} "
            f"{_num(sc['time_to_failback_s']):>10} {ramp_verdict(sc) or '-'}"
        )
        if sc["status"] == "skipped":
            print(f"    skipped: {sc['skip_reason']}")
        for failure in sc["failures"]:
            print(f"    - {failure}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
