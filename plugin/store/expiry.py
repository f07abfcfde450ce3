"""Retention for the tables besides conversations: ``failover_events`` and the command tables.

Events can hold session ids and upstream error text, commands who asked for what; each has its
own limit (``retention.events_s``, ``retention.commands_s``) and goes in short batches, like
``conversations.purge_expired``, so the writer's inserts get the SQLite lock between them.

The latest applied drain or failover of each target (``control.db_channel.standing_commands``)
is kept whatever its age, with its results: a replica starting later restores it from them, and
purging it would silently undo an operator's standing decision.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from litellm_failover.store.conversations import PURGE_BATCH, Target, _engine, delete_in_batches
from litellm_failover.store.models import (
    command_results_table,
    commands_table,
    control_replicas_table,
    events_table,
)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def purge_events(target: Target, older_than: datetime, *, batch_size: int = PURGE_BATCH) -> int:
    """Delete events created before ``older_than``; returns how many."""
    table = events_table
    expired = select(table.c.id).where(table.c.created_at < _utc(older_than)).limit(batch_size)
    async with _engine(target) as engine:
        return await delete_in_batches(engine, delete(table).where(table.c.id.in_(expired)), batch_size)


async def purge_commands(
    target: Target, older_than: datetime, *, batch_size: int = PURGE_BATCH
) -> tuple[int, int, int]:
    """Delete commands and results older than ``older_than`` (but the standing ones) and replica
    heartbeats that expired before it; returns (commands, results, replicas) deleted."""
    # Lazy: the control package builds on the store, not the other way round.
    from litellm_failover.control.db_channel import standing_commands

    cutoff = _utc(older_than)
    commands, results, replicas = commands_table, command_results_table, control_replicas_table
    async with _engine(target) as engine:
        keep = sorted(command.command_id for command in await standing_commands(engine))
        old_commands = select(commands.c.id).where(
            commands.c.created_at < cutoff, commands.c.command_id.not_in(keep)
        )
        purged_commands = await delete_in_batches(
            engine, delete(commands).where(commands.c.id.in_(old_commands.limit(batch_size))), batch_size
        )
        # One statement: a command has one result per replica, so these are few.
        async with engine.begin() as connection:
            old_results = await connection.execute(
                delete(results).where(results.c.applied_at < cutoff, results.c.command_id.not_in(keep))
            )
        async with engine.begin() as connection:
            gone = await connection.execute(delete(replicas).where(replicas.c.expires_at < cutoff))
    return purged_commands, old_results.rowcount or 0, gone.rowcount or 0
