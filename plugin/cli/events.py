"""``litellm-failover events``: read the audit trail, as a table for people or JSON lines for tools."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from litellm_failover.cli.db import add_url_argument, print_rows, report_error, resolve_url, usage_error
from litellm_failover.durations import DURATION_HELP, parse_since
from litellm_failover.store.queries import list_events


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return number


def _route(row: dict[str, Any]) -> str:
    if row.get("from_deployment") or row.get("to_deployment"):
        return f"{row.get('from_deployment') or '-'} -> {row.get('to_deployment') or '-'}"
    return row.get("deployment_id") or ""


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"failover events ({len(rows)}, newest last)", title_justify="left")
    # Ids are never cut (an id with an ellipsis cannot be grepped or pasted): a column too narrow
    # for one folds it onto the next line instead. The reason, what an operator reads, wraps.
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("group", overflow="fold")
    table.add_column("deployment", overflow="fold")
    table.add_column("reason", ratio=1, overflow="fold")
    table.add_column("request", overflow="fold")
    for row in rows:
        table.add_row(
            row["created_at"].strftime("%m-%d %H:%M:%S"),
            row["event_type"],
            row["model_group"],
            _route(row),
            row["reason"],
            row.get("request_id") or "",
        )
    return table


async def _events(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since)
        except ValueError as exc:
            return usage_error(str(exc))
    try:
        rows = await list_events(
            url, since=since, event_type=args.event_type, model_group=args.model_group, limit=args.limit
        )
    except Exception as exc:
        return report_error("events", exc, args)
    return print_rows(rows, as_json=args.json, table=_table, empty="no events match")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("events", help="List failover events from the store (the audit trail).")
    add_url_argument(parser)
    parser.add_argument(
        "--since",
        metavar="DURATION_OR_TIME",
        help=f"only events from this long ago or since this ISO-8601 time; a duration is {DURATION_HELP}",
    )
    parser.add_argument("--type", dest="event_type", help="only this event type (e.g. failover)")
    parser.add_argument("--group", dest="model_group", help="only this model group")
    parser.add_argument(
        "--limit", type=_positive_int, default=200, help="at most this many, the newest (default 200)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=_events)
