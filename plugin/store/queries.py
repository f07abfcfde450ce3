"""Read side of the store, for the CLI and for operators' scripts.

Each call opens a short-lived engine and disposes of it (``reading_engine``): reads are rare,
human-driven, and must not hold connections on a database the proxy also uses. A SQLite file
that does not exist is an error here rather than a new empty database. Conversation reads, which
the running plugin also makes through the writer's engine, are in ``store.conversations``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from litellm_failover.store.engine import reading_engine
from litellm_failover.store.models import deployment_state_table, events_table


@asynccontextmanager
async def _reading(url: str | URL) -> AsyncIterator[AsyncConnection]:
    async with reading_engine(url) as engine, engine.connect() as connection:
        yield connection


async def list_events(
    url: str | URL,
    *,
    since: datetime | None = None,
    event_type: str | None = None,
    model_group: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The newest ``limit`` events matching the filters, oldest first (newest last, like a log).

    ``since`` is inclusive; a naive datetime is taken as UTC. Ties on ``created_at`` are broken by
    id so that repeated calls list the same rows in the same order.
    """
    table = events_table
    query = select(table)
    if since is not None:
        query = query.where(table.c.created_at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
    if event_type is not None:
        query = query.where(table.c.event_type == event_type)
    if model_group is not None:
        query = query.where(table.c.model_group == model_group)
    query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(max(limit, 0))
    async with _reading(url) as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [dict(row) for row in reversed(rows)]


async def list_deployment_states(url: str | URL) -> list[dict[str, Any]]:
    """Every deployment's latest recorded state, ordered by model group then deployment."""
    table = deployment_state_table
    query = select(table).order_by(table.c.model_group, table.c.deployment_id)
    async with _reading(url) as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [dict(row) for row in rows]


async def list_traffic_events(url: str | URL, event_types: Sequence[str]) -> list[dict[str, Any]]:
    """Every event of ``event_types`` (the switching events that say whether a deployment is
    drained, held or ramping), oldest first. These are operator actions and failbacks, so they are
    few, and retention bounds them; ``litellm-failover status`` folds them into one word each."""
    table = events_table
    query = (
        select(table)
        .where(table.c.event_type.in_(list(event_types)))
        .order_by(table.c.created_at, table.c.id)
    )
    async with _reading(url) as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [dict(row) for row in rows]
