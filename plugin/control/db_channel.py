"""Commands through the database: ``failover_commands`` in, ``failover_command_results`` out.

The CLI inserts a command row; every running replica polls for rows past the highest ``id`` it
has seen (``control.poll_interval_s``), applies each and inserts its result row, which the CLI
polls for. ``failover_control_replicas`` holds one row per listening replica, refreshed by its
heartbeat, so the CLI knows whose results to wait for and can name a replica that did not answer.

Polling by ``id`` rather than by time keeps clocks out of it: a replica's start position is the
highest ``id`` at its start, whatever the CLI host's clock says. PostgreSQL hands out sequence
numbers before commit, so two commands inserted at the same moment can become visible out of
order; the poll therefore looks back ``LOOKBACK`` ids and skips the commands it already handled.

Every function takes an engine (the plugin's writer engine: pooled, migrated) or a URL (the CLI's
short-lived engine), like ``store.conversations``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import NullType

from litellm_failover.control.commands import STANDING, Command, CommandError, build_command
from litellm_failover.control.dispatch import CommandResult
from litellm_failover.store.conversations import Target, _engine  # an engine, or one for a URL
from litellm_failover.store.models import command_results_table, commands_table, control_replicas_table

LOOKBACK = 50
"""Ids a poll looks back past the highest seen, for commands that committed out of id order."""

BATCH = 100
"""Commands read per poll; a backlog is worked through on the following polls."""

FORGET_REPLICAS_AFTER = timedelta(days=1)
"""Rows of replicas gone this long are deleted by any heartbeat (replica ids change per start)."""

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert(engine: AsyncEngine, table: Any) -> Any:
    try:
        return _INSERTS[engine.dialect.name](table)
    except KeyError:
        raise ValueError(f"unsupported database dialect {engine.dialect.name!r}") from None


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A polled row: its sequence number and the command, or why it is not a valid one."""

    seq: int
    command_id: str
    command: Command | None
    error: str | None = None


# -- the CLI's side ----------------------------------------------------------------------------


async def insert_command(target: Target, command: Command) -> None:
    async with _engine(target) as engine, engine.begin() as connection:
        await connection.execute(
            commands_table.insert().values(
                command_id=command.command_id,
                created_at=command.issued_at,
                kind=command.kind,
                target=command.target,
                args=command.args,
                issued_by=command.issued_by,
                signature=command.tag or None,
            )
        )


async def read_results(target: Target, command_id: str) -> list[CommandResult]:
    table = command_results_table
    query = select(table).where(table.c.command_id == command_id).order_by(table.c.instance_id)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [
        CommandResult(
            instance_id=row["instance_id"],
            outcome=row["outcome"],
            message=row["message"],
            details=row["details"] or {},
            applied_at=row["applied_at"],
        )
        for row in rows
    ]


async def live_replicas(target: Target, now: datetime) -> list[str]:
    """Replicas whose heartbeat has not run out at ``now``, by instance id."""
    table = control_replicas_table
    query = select(table.c.instance_id).where(table.c.expires_at > now).order_by(table.c.instance_id)
    async with _engine(target) as engine, engine.connect() as connection:
        return list((await connection.execute(query)).scalars())


# -- the replica's side ------------------------------------------------------------------------


async def start_position(target: Target, before: datetime | None = None) -> int:
    """The highest command ``id`` (0 for none); with ``before``, of commands created before it
    (for a replica that reaches the database only after its start)."""
    table = commands_table
    query = select(func.max(table.c.id))
    if before is not None:
        query = query.where(table.c.created_at < before)
    async with _engine(target) as engine, engine.connect() as connection:
        return int((await connection.execute(query)).scalar() or 0)


# A row can hold anything whoever wrote it put there (SQLite keeps any value in any column), and
# one value the column's type cannot read would fail the whole query, every poll, for good. So
# these two are read as the driver returns them and judged per row by ``_row_command``.
_RAW = frozenset({"created_at", "args"})
_COLUMNS = [
    type_coerce(column, NullType()).label(column.name) if column.name in _RAW else column
    for column in commands_table.c
]


def _moment(value: Any) -> datetime:
    """``created_at`` as the driver returned it: a datetime (PostgreSQL) or SQLite's text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise CommandError(f"issued_at: must be a time (got {type(value).__name__})")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row_command(row: Any) -> Command:
    args = row["args"]
    if isinstance(args, (str, bytes)):
        args = json.loads(args)  # the raw JSON text (see _COLUMNS)
    return build_command(
        row["kind"],
        row["target"],
        args if args is not None else {},
        command_id=row["command_id"],
        issued_at=_moment(row["created_at"]),
        issued_by=row["issued_by"],
        tag=row["signature"] or "",
    )


def _polled(row: Any) -> CommandRow:
    try:
        return CommandRow(row["id"], row["command_id"], _row_command(row))
    except (ValueError, TypeError, OverflowError) as exc:  # CommandError, bad JSON, bad time
        return CommandRow(row["id"], row["command_id"], None, f"invalid command: {exc}")


async def fetch_commands(target: Target, after: int, limit: int = BATCH) -> list[CommandRow]:
    """Commands with ``id > after``, oldest first; rows that are not valid commands come back
    with ``error`` set (a replica reports them as refused rather than skipping them silently)."""
    table = commands_table
    query = select(*_COLUMNS).where(table.c.id > after).order_by(table.c.id).limit(limit)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [_polled(row) for row in rows]


async def write_results(target: Target, results: Iterable[tuple[str, CommandResult]]) -> None:
    """Insert ``(command_id, result)`` rows; a result already there stays (first answer wins)."""
    values = [
        {
            "command_id": command_id,
            "instance_id": result.instance_id,
            "ok": result.ok,
            "outcome": result.outcome,
            "message": result.message,
            "details": result.details,
            "applied_at": result.applied_at,
        }
        for command_id, result in results
    ]
    if not values:
        return
    async with _engine(target) as engine, engine.begin() as connection:
        stmt = _insert(engine, command_results_table).on_conflict_do_nothing(
            index_elements=[command_results_table.c.command_id, command_results_table.c.instance_id]
        )
        await connection.execute(stmt, values)


async def heartbeat(
    target: Target, instance_id: str, started_at: datetime, now: datetime, ttl_s: float
) -> None:
    """Say this replica listens until ``now + ttl_s``; forget replicas gone for a day."""
    table = control_replicas_table
    async with _engine(target) as engine, engine.begin() as connection:
        stmt = _insert(engine, table).values(
            instance_id=instance_id,
            started_at=started_at,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.instance_id],
            set_={
                "started_at": stmt.excluded.started_at,
                "last_seen_at": stmt.excluded.last_seen_at,
                "expires_at": stmt.excluded.expires_at,
            },
        )
        await connection.execute(stmt)
        await connection.execute(delete(table).where(table.c.expires_at < now - FORGET_REPLICAS_AFTER))


async def leave(target: Target, instance_id: str) -> None:
    """This replica stops listening: the CLI no longer waits for it."""
    table = control_replicas_table
    async with _engine(target) as engine, engine.begin() as connection:
        await connection.execute(delete(table).where(table.c.instance_id == instance_id))


async def standing_commands(target: Target) -> list[Command]:
    """The latest applied command per deployment (drain/undrain) and per group
    (failover/failback), oldest first. Only commands some replica applied count: one that
    every replica refused (a typo'd id) changes nothing that a later replica should take over."""
    commands, results = commands_table, command_results_table
    applied = (
        select(results.c.command_id)
        .where(results.c.command_id == commands.c.command_id, results.c.ok.is_(True))
        .exists()
    )
    query = select(*_COLUMNS).where(commands.c.kind.in_(sorted(STANDING)), applied).order_by(commands.c.id)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    latest: dict[tuple[str, str], Command] = {}
    for row in rows:
        try:
            command = _row_command(row)
        except (ValueError, TypeError, OverflowError):
            continue  # never applied anywhere: a bad row is refused, so it cannot be standing
        key = (STANDING[command.kind], command.target)
        latest.pop(key, None)  # re-insert: dict order then follows the latest command's order
        latest[key] = command
    return list(latest.values())
