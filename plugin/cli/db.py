"""``litellm-failover db upgrade|downgrade|current``: manage the store's schema.

Also home of the database plumbing the ``events`` and ``status`` commands share: the ``--url``
and ``--config`` options (``cli._config_source``: ``--url``, else the proxy config's
``database_url``, else ``LITELLM_FAILOVER_DATABASE_URL``, so a password need not sit in shell
history or ``ps`` output, else the default) and the one-line, credential-free error report
(exit 1) that says which URL was tried, where it came from and what to do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from litellm_failover.cli._config_source import Sourced, add_config_argument, database_url
from litellm_failover.config_file import DATABASE_URL_ENV
from litellm_failover.settings import DEFAULT_DATABASE_URL, FailoverConfigError
from litellm_failover.store.engine import (
    StoreError,
    describe_error,
    is_missing_table_error,
    parse_url,
    redact_url,
)
from litellm_failover.store.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
    upgrade_sql,
)


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--config``: every command that reads the store takes both."""
    parser.add_argument(
        "--url",
        default=None,
        help=f"SQLAlchemy async database URL (default: --config's failover_settings.database_url, "
        f"else ${DATABASE_URL_ENV}, else {DEFAULT_DATABASE_URL})",
    )
    add_config_argument(parser)


def resolve_url(args: argparse.Namespace) -> str:
    """The URL to use. One that is not a supported database URL is a usage error (exit 2)."""
    source = database_url(args)
    try:
        parse_url(source.value)
    except StoreError as exc:
        raise FailoverConfigError(f"{source.origin}: {exc}") from None
    return source.value


def _advice(exc: BaseException, source: Sourced) -> str:
    """What to do next, for the usual reasons: the wrong database, no tables yet, no server."""
    if source.origin == "the default":
        return (
            "to read the proxy's database, pass --config with the proxy's config.yaml, "
            f"or --url, or set ${DATABASE_URL_ENV}"
        )
    if is_missing_table_error(exc) or "database file not found" in str(exc):
        return (
            "is this the proxy's database? (a relative SQLite path is relative to the directory each "
            "process runs in); `litellm-failover db upgrade` with the same options creates the tables"
        )
    return "check that the database is up and reachable from here"


def report_error(what: str, exc: BaseException, args: argparse.Namespace) -> int:
    """Print one credential-free line for a failed database command: the error, the URL tried and
    where it came from, and what to do; exit code 1."""
    source = database_url(args)
    message = describe_error(exc, source.value)
    if is_missing_table_error(exc):
        message += " (has `litellm-failover db upgrade` been run on this database?)"
    print(
        f"litellm-failover: {what}: {message}; database {redact_url(source.value)} from {source.origin}; "
        f"{_advice(exc, source)}",
        file=sys.stderr,
    )
    return 1


def table_console(*, stderr: bool = False) -> Console:
    """A terminal's own width; when piped (to a file, ``less``, CI logs) a wide one, since 80
    columns cannot hold an events or status table without crushing the reason column. Rich
    writes no colour codes where its stream is not a terminal."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=200)


def print_json(value: Any) -> None:
    """One JSON document on one line (datetimes as ISO-8601): what every ``--json`` prints."""
    print(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


def print_rows(
    rows: list[dict[str, Any]], *, as_json: bool, table: Callable[[list[dict[str, Any]]], Table], empty: str
) -> int:
    """What ``events`` and ``status`` print: one JSON object per row (datetimes as ISO-8601), or a
    table, or one line when there is nothing to show."""
    if as_json:
        for row in rows:
            print_json(row)
        return 0
    console = table_console()
    console.print(table(rows) if rows else empty)
    return 0


def usage_error(message: str) -> int:
    print(f"litellm-failover: {message}", file=sys.stderr)
    return 2


async def _upgrade(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    if args.sql:
        print(upgrade_sql(url, args.revision), end="")
        return 0
    try:
        await upgrade_database(url, args.revision)
        revision = await current_revision(url)
    except Exception as exc:
        return report_error("db upgrade failed", exc, args)
    print(f"{redact_url(url)}: at revision {revision or 'base'} (newest known: {head_revision()})")
    return 0


async def _downgrade(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    try:
        await downgrade_database(url, args.revision)
        revision = await current_revision(url)
    except Exception as exc:
        return report_error("db downgrade failed", exc, args)
    print(f"{redact_url(url)}: at revision {revision or 'base'}")
    return 0


async def _current(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    try:
        revision = await current_revision(url)
    except Exception as exc:
        return report_error("db current failed", exc, args)
    head = head_revision()
    note = "up to date" if revision == head else f"newest known is {head}: run `litellm-failover db upgrade`"
    print(f"{redact_url(url)}: at revision {revision or 'base'} ({note})")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="Create or migrate the store's tables.")
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")

    upgrade = commands.add_parser("upgrade", help="Apply migrations up to a revision (default: head).")
    add_url_argument(upgrade)
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.add_argument(
        "--sql", action="store_true", help="print the DDL instead of running it (no connection made)"
    )
    upgrade.set_defaults(handler=_upgrade)

    downgrade = commands.add_parser(
        "downgrade", help="Revert migrations down to a revision ('base' drops every table)."
    )
    add_url_argument(downgrade)
    downgrade.add_argument(
        "--revision", required=True, help="target revision, e.g. 'base' (required: this drops data)"
    )
    downgrade.set_defaults(handler=_downgrade)

    current = commands.add_parser("current", help="Show the database's revision.")
    add_url_argument(current)
    current.set_defaults(handler=_current)
