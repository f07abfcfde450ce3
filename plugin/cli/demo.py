"""``litellm-failover demo``: kill a primary under load and watch the failover and recovery."""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print the summary as one JSON object on stdout (the running view goes to stderr).",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    import logging

    from litellm_failover.cli.db import table_console
    from litellm_failover.demo import run_demo

    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    # With --json, stdout carries the summary alone, so that `demo --json | jq` works.
    summary = await run_demo(args.duration, args.output_dir, table_console(stderr=args.json))
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["client_visible_errors"] == 0 else 1
