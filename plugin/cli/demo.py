"""``litellm-failover demo``: kill a primary under load and watch the failover and recovery."""

from __future__ import annotations

import argparse
from pathlib import Path

from litellm_failover.durations import DURATION_HELP, duration_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="Run three fake vLLM nodes, kill a primary under load, show failover and recovery."
    )
    parser.add_argument(
        "--duration",
        type=duration_arg(),
        default=24.0,
        metavar="DURATION",
        help=f"How long the load runs, about (default 24s); {DURATION_HELP}.",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("demo-output"), help="Where the SQLite file and summary go."
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    import logging

    from rich.console import Console

    from litellm_failover.demo import run_demo

    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    summary = await run_demo(args.duration, args.output_dir, Console())
    return 0 if summary["client_visible_errors"] == 0 else 1
