"""Read and maintain conversation state: ``failover_sessions`` and ``failover_messages``.

Two kinds of caller, one set of functions. The running plugin passes the writer's engine
(``StoreWriter.engine``: pooled, already migrated) to learn a session's pin in the background or
rebuild a conversation for a stateful request; the CLI and scripts pass a URL and get a
short-lived engine (``reading_engine``) disposed of after the call. Every function takes either.

Nothing here is on the request path: callers run these off it and treat an error (a database
that is away) as "not known", never as a failed request.

Sessions belong to a caller (``sessions.identity.caller_of``): the plugin always passes the
request's caller, so a session id another caller uses is another session. ``caller=None`` (the
CLI's default) means every caller: the operator's view.
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
    caller: str = "anonymous"


class Located(NamedTuple):
    """Where a response id was stored: its session, position and chain hash."""

    session_id: str
    seq: int
    chain_hash: str


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
    caller: str = "anonymous"
    parent_hash: str | None = None  # None: written before migration 0005 (no history chain)
    chain_hash: str = ""


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


async def load_session(target: Target, session_id: str, *, caller: str | None = None) -> list[SessionGroup]:
    """The session's pin, turns and last activity in each model group it used (by group name);
    ``caller`` None: the session id under every caller (then ordered by caller too)."""
    table = sessions_table
    query = select(
        table.c.model_group, table.c.pinned_deployment, table.c.turn_count, table.c.updated_at, table.c.caller
    ).where(table.c.session_id == session_id)
    if caller is not None:
        query = query.where(table.c.caller == caller)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query.order_by(table.c.caller, table.c.model_group))).all()
    return [SessionGroup(*row) for row in rows]


async def load_messages(
    target: Target, session_id: str, *, caller: str | None = None, up_to_seq: int | None = None
) -> list[StoredMessage]:
    """The session's messages in conversation order (every branch: a position can hold several
    messages, oldest first); ``up_to_seq`` (inclusive) stops at a given position."""
    table = messages_table
    query = select(*(table.c[name] for name in _MESSAGE_FIELDS)).where(table.c.session_id == session_id)
    if caller is not None:
        query = query.where(table.c.caller == caller)
    if up_to_seq is not None:
        query = query.where(table.c.seq <= up_to_seq)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = (await connection.execute(query.order_by(table.c.caller, table.c.seq, table.c.id))).all()
    return [StoredMessage(*row) for row in rows]


def chain_of(messages: list[StoredMessage], tip: StoredMessage) -> list[StoredMessage]:
    """The history ``tip`` belongs to, first message first: its parents, one by one, back to
    the root. Stops early (the caller sees the gap) when a parent is not among ``messages``."""
    by_hash = {m.chain_hash: m for m in messages}
    chain = [tip]
    while chain[-1].parent_hash and len(chain) <= len(messages):
        parent = by_hash.get(chain[-1].parent_hash)
        if parent is None:
            break
        chain.append(parent)
    chain.reverse()
    return chain


async def load_chain(
    target: Target, caller: str, session_id: str, *, tip_hash: str | None = None
) -> list[StoredMessage]:
    """One branch of a caller's session, first message first: the chain ending in the message
    whose chain hash is ``tip_hash`` (a response's own history), or, without one, the chain of
    the newest message at the furthest position (the conversation as last continued)."""
    messages = await load_messages(target, session_id, caller=caller)
    if not messages:
        return []
    if tip_hash is None:
        tip = max(messages, key=lambda m: (m.seq, m.created_at))
    else:
        found = next((m for m in messages if m.chain_hash == tip_hash), None)
        if found is None:
            return []
        tip = found
    return chain_of(messages, tip)


async def find_response(target: Target, response_id: str, *, caller: str | None = None) -> Located | None:
    """Where a Responses API response id was stored, in ``caller``'s sessions (None: anyone's).

    Should one id have been stored twice (two sessions replaying one response), the newest wins.
    """
    table = messages_table
    query = select(table.c.session_id, table.c.seq, table.c.chain_hash).where(
        table.c.response_id == response_id
    )
    if caller is not None:
        query = query.where(table.c.caller == caller)
    query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)
    async with _engine(target) as engine, engine.connect() as connection:
        row = (await connection.execute(query)).first()
    return Located(row[0], row[1], row[2]) if row is not None else None


async def delete_session(target: Target, session_id: str, *, caller: str | None = None) -> tuple[int, int]:
    """Delete a session in every group and all its messages, in one transaction; ``caller``
    None deletes the id under every caller (a user's deletion request names the id they used).

    Returns (session rows deleted, messages deleted); (0, 0) means there was no such session.
    """
    messages, sessions = messages_table, sessions_table
    purge_messages = delete(messages).where(messages.c.session_id == session_id)
    purge_sessions = delete(sessions).where(sessions.c.session_id == session_id)
    if caller is not None:
        purge_messages = purge_messages.where(messages.c.caller == caller)
        purge_sessions = purge_sessions.where(sessions.c.caller == caller)
    async with _engine(target) as engine, engine.begin() as connection:
        deleted_messages = await connection.execute(purge_messages)
        deleted_sessions = await connection.execute(purge_sessions)
    return deleted_sessions.rowcount or 0, deleted_messages.rowcount or 0


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
        .where(
            sessions.c.caller == candidates.c.caller,
            sessions.c.session_id == candidates.c.session_id,
            sessions.c.updated_at >= cutoff,
        )
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
        deleted_messages = await delete_in_batches(engine, purge_messages, batch_size)
        deleted_sessions = await delete_in_batches(engine, purge_sessions, batch_size)
    return deleted_sessions, deleted_messages


async def delete_in_batches(engine: AsyncEngine, statement: Any, batch_size: int) -> int:
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

    One dict per (caller, session, group): caller, session_id, model_group, pinned_deployment,
    turn_count, created_at, updated_at, messages (stored messages of the caller's session, all
    groups and branches together).
    ``since`` is inclusive, on ``updated_at``; a naive datetime is taken as UTC.
    """
    table = sessions_table
    query = select(table)
    if since is not None:
        query = query.where(table.c.updated_at >= _utc(since))
    if model_group is not None:
        query = query.where(table.c.model_group == model_group)
    query = query.order_by(table.c.updated_at.desc(), table.c.session_id, table.c.caller, table.c.model_group)
    async with _engine(target) as engine, engine.connect() as connection:
        rows = [dict(row) for row in (await connection.execute(query.limit(max(limit, 0)))).mappings()]
        counts: dict[tuple[str, str], int] = {}
        if rows:
            ids = sorted({row["session_id"] for row in rows})
            table = messages_table
            counted = select(table.c.caller, table.c.session_id, func.count()).where(
                table.c.session_id.in_(ids)
            )
            result = await connection.execute(counted.group_by(table.c.caller, table.c.session_id))
            counts = {(caller, session_id): count for caller, session_id, count in result.all()}
    for row in rows:
        row["messages"] = counts.get((row["caller"], row["session_id"]), 0)
    return rows
