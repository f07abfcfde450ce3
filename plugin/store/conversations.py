"""Read and maintain conversation state: ``failover_sessions`` and ``failover_messages``.

Two kinds of caller, one set of functions. The running plugin passes the writer's engine
(``StoreWriter.engine``: pooled, already migrated) to learn a session's pin in the background or
rebuild a conversation for a stateful request; the CLI and scripts pass a URL and get a
short-lived engine (``reading_engine``) disposed of after the call. Every function takes either.

Nothing here is on the request path: callers run these off it and treat an error (a database
that is away) as "not known", never as a failed request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.store.engine import reading_engine
from litellm_failover.store.models import messages_table, sessions_table

PURGE_BATCH = 1000
"""Rows deleted per transaction by the purge: short transactions, so that on SQLite (one writer
at a time) the store writer's inserts get the lock between batches instead of after all of them."""

Target = AsyncEngine | str | URL


class SessionGroup(NamedTuple):
    """A session's row in one model group, as ``load_session`` returns it."""

    model_group: str
    pinned_deployment: str | None
    turn_count: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One row of ``failover_messages`` (the stored form of ``events.MessageRow``).

    ``content`` is None when only the hash was kept (content storage off, or over the size cap:
    then ``truncated`` is True).
    """

    session_id: str
    seq: int
    role: str
    content: str | None
    content_hash: str
    content_chars: int
    deployment_id: str | None
    response_id: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    truncated: bool
    created_at: datetime


_MESSAGE_FIELDS = tuple(StoredMessage.__dataclass_fields__)


@asynccontextmanager
async def _engine(target: Target) -> AsyncIterator[AsyncEngine]:
    """The caller's engine as it is, or a short-lived one for a URL."""
    if isinstance(target, AsyncEngine):
        yield target
        return
    async with reading_engine(target) as engine:
        yield engine


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def load_session(target: Target, session_id: str) -> list[SessionGroup]:
    """The session's pin, turns and last activity in each model group it used (by group name)."""
    table = sessions_table
    query = (
        select(table.c.model_group, table.c.pinned_deployment, table.c.turn_count, table.c.updated_at)
        .where(table.c.session_id == session_id)
        .order_by(table.c.model_group)
    )
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [SessionGroup(*row) for row in rows]


async def load_messages(
    target: Target, session_id: str, *, up_to_seq: int | None = None
) -> list[StoredMessage]:
    """The session's messages in conversation order; ``up_to_seq`` (inclusive) stops the history
    at a given turn, e.g. the message a ``previous_response_id`` names."""
    table = messages_table
    query = select(*(table.c[name] for name in _MESSAGE_FIELDS)).where(table.c.session_id == session_id)
    if up_to_seq is not None:
        query = query.where(table.c.seq <= up_to_seq)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query.order_by(table.c.seq))).all()
    return [StoredMessage(*row) for row in rows]


async def find_response(target: Target, response_id: str) -> tuple[str, int] | None:
    """(session_id, seq) of the message a Responses API response id was stored with, or None.

    Should one id have been stored twice (two sessions replaying one response), the newest wins.
    """
    table = messages_table
    query = (
        select(table.c.session_id, table.c.seq)
        .where(table.c.response_id == response_id)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .limit(1)
    )
    async with _engine(target) as engine, engine.connect() as connection:
        row = (await connection.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


async def delete_session(target: Target, session_id: str) -> tuple[int, int]:
    """Delete a session in every group and all its messages, in one transaction.

    Returns (session rows deleted, messages deleted); (0, 0) means there was no such session.
    """
    async with _engine(target) as engine, engine.begin() as connection:
        messages = await connection.execute(
            delete(messages_table).where(messages_table.c.session_id == session_id)
        )
        sessions = await connection.execute(
            delete(sessions_table).where(sessions_table.c.session_id == session_id)
        )
    return sessions.rowcount or 0, messages.rowcount or 0


async def purge_expired(
    target: Target, older_than: datetime, *, batch_size: int = PURGE_BATCH
) -> tuple[int, int]:
    """Delete what has been idle since before ``older_than``; returns (session rows, messages).

    A session row goes when its ``updated_at`` is older. A message goes when it is older itself
    and no row of its session is newer: the messages of a conversation still active in some
    group stay whole, and messages whose session row never arrived (or was deleted) still
    expire. A message newer than the cutoff is never touched, so rows the writer is storing
    right now are safe. Deleted in batches of ``batch_size`` rows, a transaction each.
    """
    cutoff = _utc(older_than)
    sessions, messages = sessions_table, messages_table
    candidates = messages.alias("candidate")
    live = (
        select(sessions.c.session_id)
        .where(sessions.c.session_id == candidates.c.session_id, sessions.c.updated_at >= cutoff)
        .exists()
    )
    expired_messages = (
        select(candidates.c.id).where(candidates.c.created_at < cutoff, ~live).limit(batch_size)
    )
    expired_sessions = (
        select(sessions.c.session_id).where(sessions.c.updated_at < cutoff).distinct().limit(batch_size)
    )
    purge_messages = delete(messages).where(messages.c.id.in_(expired_messages))
    purge_sessions = delete(sessions).where(
        sessions.c.updated_at < cutoff, sessions.c.session_id.in_(expired_sessions.subquery().select())
    )
    async with _engine(target) as engine:
        deleted_messages = await _delete_in_batches(engine, purge_messages, batch_size)
        deleted_sessions = await _delete_in_batches(engine, purge_sessions, batch_size)
    return deleted_sessions, deleted_messages


async def _delete_in_batches(engine: AsyncEngine, statement: Any, batch_size: int) -> int:
    """Run a batch-limited DELETE until it deletes less than a batch; rows deleted in all."""
    total = 0
    while True:
        async with engine.begin() as connection:
            count = (await connection.execute(statement)).rowcount or 0
        total += count
        if count < batch_size:
            return total


async def list_sessions(
    target: Target,
    *,
    limit: int = 100,
    since: datetime | None = None,
    model_group: str | None = None,
) -> list[dict[str, Any]]:
    """The ``limit`` most recently active session rows (newest first), with their message counts.

    One dict per (session, group): session_id, model_group, pinned_deployment, turn_count,
    created_at, updated_at, messages (stored messages of the session, all groups together).
    ``since`` is inclusive, on ``updated_at``; a naive datetime is taken as UTC.
    """
    table = sessions_table
    query = select(table)
    if since is not None:
        query = query.where(table.c.updated_at >= _utc(since))
    if model_group is not None:
        query = query.where(table.c.model_group == model_group)
    query = query.order_by(table.c.updated_at.desc(), table.c.session_id, table.c.model_group)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = [dict(row) for row in (await connection.execute(query.limit(max(limit, 0)))).mappings()]
        counts: dict[str, int] = {}
        if rows:
            ids = sorted({row["session_id"] for row in rows})
            counted = select(messages_table.c.session_id, func.count()).where(
                messages_table.c.session_id.in_(ids)
            )
            result = await connection.execute(counted.group_by(messages_table.c.session_id))
            counts = {session_id: count for session_id, count in result.all()}
    for row in rows:
        row["messages"] = counts.get(row["session_id"], 0)
    return rows
