"""Writing what the store writer holds: table by table, a batch per transaction, bad rows alone.

``TableWriter.write_pending`` is one attempt of the writer's background task: it writes the rows
queued when it starts (not those arriving meanwhile: every table must get a turn), and removes
each batch from its buffer only once it is committed, so a database that goes away mid-write
loses nothing. Events go before states and sessions before messages, so a reader who finds a
state finds its event, and one who finds a message finds its session (``write_pending``).

Why rows are retried one by one: a database that refuses a batch for its content (a constraint,
a value out of range) would refuse it forever, and one bad row must never hold back every row
behind it; the refused ones are dropped, counted and logged without their credentials.
Scheduling (when to write, backoff, shutdown) is the writer's (``store.writer``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.events import FailoverEvent
from litellm_failover.records import DeploymentStateRow, MessageRow
from litellm_failover.store.buffers import RowQueue, SessionBuffer, StateBuffer
from litellm_failover.store.engine import describe_error
from litellm_failover.store.rows import event_row, message_row, session_row, state_row
from litellm_failover.store.statements import insert_events, insert_messages, upsert_sessions, upsert_states

logger = logging.getLogger("litellm_failover.store")

_IDENT_FIELDS = ("event_id", "deployment_id", "session_id", "seq")  # how a refused row is named


_ROW_SQLSTATE_CLASSES = ("22", "23")  # data exception, integrity constraint violation


def _sqlstate(exc: DBAPIError) -> str | None:
    """The server's SQLSTATE, where the driver gives one (asyncpg does; sqlite3 does not)."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def is_row_error(exc: BaseException) -> bool:
    """The database refused these rows for their content (retrying cannot help), as opposed to
    being unreachable.

    SQLAlchemy maps only some driver errors to ``DataError`` / ``IntegrityError``: asyncpg's
    data exceptions (a NUL in text, ``NaN`` in ``jsonb``, an integer out of range) arrive as a
    plain ``DBAPIError``, which used to be taken for an outage and retried forever. So the
    SQLSTATE class decides where there is one (22 and 23 are the row's fault); a value that
    could not even be bound (not JSON serialisable, out of the driver's range) is the row's fault
    too, whether the driver raised it (asyncpg's client-side ``DataError`` is a ``ValueError``,
    sqlite3 raises ``OverflowError``) or SQLAlchemy's bind processing did (``StatementError``).
    """
    if isinstance(exc, (DataError, IntegrityError)):
        return True
    if isinstance(exc, DBAPIError):
        code = _sqlstate(exc)
        if code is not None:
            return code[:2] in _ROW_SQLSTATE_CLASSES
        cause = getattr(exc.orig, "__cause__", None)
        return isinstance(cause, (ValueError, TypeError, OverflowError))
    if isinstance(exc, StatementError):
        return True
    return isinstance(exc, (ValueError, TypeError, OverflowError))


class TableWriter:
    """The write side of ``StoreWriter``: its buffers in, rows in the four tables out, counted."""

    def __init__(
        self,
        url: URL,
        batch_size: int,
        *,
        events: RowQueue[FailoverEvent],
        messages: RowQueue[MessageRow],
        states: StateBuffer,
        sessions: SessionBuffer,
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self._url = url
        self._batch_size = batch_size
        self._events = events
        self._messages = messages
        self._states = states
        self._sessions = sessions
        self._notify = notify  # after each committed batch: ``flush`` callers look again
        self.written = 0  # events
        self.states_written = 0
        self.sessions_written = 0
        self.messages_written = 0
        self.rejected = 0

    async def write_pending(self, engine: AsyncEngine) -> None:
        """Write the rows queued now, table by table; raises when the database is unreachable.

        What goes together is counted before the first of them is written: the states before the
        events are counted, and the messages before the sessions are taken. The plugin submits a
        transition's event just before its state, and a turn's messages just before its session,
        without awaiting in between; a row that arrives during the write of the table before
        its own would otherwise be written a flush ahead of its companion, and a reader could
        find a state with no event or a message with no session.
        """
        states = self._states.take()
        self.written += await self._drain(engine, self._events, self._write_events)
        await self._write_states(engine, *states)
        messages = len(self._messages)
        await self._write_sessions(engine)
        self.messages_written += await self._drain(engine, self._messages, self._write_messages, messages)

    async def _drain(
        self,
        engine: AsyncEngine,
        queue: RowQueue[Any],
        write: Callable[[AsyncEngine, list[Any]], Awaitable[int]],
        count: int | None = None,
    ) -> int:
        """Write the oldest ``count`` rows of ``queue`` (all it holds now when None), a batch per
        transaction, oldest first; rows written."""
        written = 0
        remaining = len(queue) if count is None else min(count, len(queue))
        while remaining > 0:
            batch = queue.head(min(remaining, self._batch_size))
            written += await write(engine, batch)
            queue.pop(len(batch))
            remaining -= len(batch)
            await self._notify()
        return written

    async def _write_states(
        self, engine: AsyncEngine, seq: int, taken: dict[str, tuple[int, DeploymentStateRow]]
    ) -> None:
        if not taken:
            return
        values = self._convert([row for _, row in taken.values()], state_row, "deployment state")
        written = await self._execute(engine, upsert_states(engine.dialect.name), values, "deployment state")
        self._states.settle(seq, taken)
        self.states_written += written

    async def _write_sessions(self, engine: AsyncEngine) -> None:
        seq, taken = self._sessions.take()
        written = None
        try:
            if taken:
                values = self._convert(taken, lambda e: session_row(e.row, e.created_at), "session")
                written = await self._execute(engine, upsert_sessions(engine.dialect.name), values, "session")
        finally:
            # Unreachable (or cancelled at shutdown): the turns go back for the next attempt. If
            # the one-by-one fallback had already committed some rows, those turns count twice:
            # that takes a refused row and an outage in the same write, and costs a turn count.
            self._sessions.settle(seq, written=written is not None or not taken)
        self.sessions_written += written or 0

    async def _write_events(self, engine: AsyncEngine, batch: list[FailoverEvent]) -> int:
        rows = self._convert(batch, event_row, "event")
        return await self._execute(engine, insert_events(engine.dialect.name), rows, "event")

    async def _write_messages(self, engine: AsyncEngine, batch: list[MessageRow]) -> int:
        rows = self._convert(batch, message_row, "message")
        return await self._execute(engine, insert_messages(engine.dialect.name), rows, "message")

    def _convert(self, items: list[Any], convert: Any, kind: str) -> list[dict[str, Any]]:
        rows = []
        for item in items:
            try:
                rows.append(convert(item))
            except Exception as exc:
                self._reject(kind, item, exc)
        return rows

    async def _execute(self, engine: AsyncEngine, stmt: Any, rows: list[dict[str, Any]], kind: str) -> int:
        """All rows in one transaction (executemany); the number written.

        If the database refuses the batch for its content rather than for being unreachable,
        the rows are retried one by one and the refused ones dropped and counted.
        """
        if not rows:
            return 0
        try:
            async with engine.begin() as connection:
                await connection.execute(stmt, rows)
            return len(rows)
        except Exception as exc:
            if not is_row_error(exc):
                raise
        written = 0
        for row in rows:
            try:
                async with engine.begin() as connection:
                    await connection.execute(stmt, [row])
                written += 1
            except Exception as exc:
                if not is_row_error(exc):
                    raise
                self._reject(kind, row, exc)
        return written

    def _reject(self, kind: str, row: Any, exc: BaseException) -> None:
        self.rejected += 1
        fields = row if isinstance(row, dict) else {n: getattr(row, n, None) for n in _IDENT_FIELDS}
        ident = fields.get("id") or fields.get("event_id") or fields.get("deployment_id")
        if fields.get("session_id") is not None:  # sessions and messages: the session (and position)
            ident = f"session {fields['session_id']!r}"
            if fields.get("seq") is not None:
                ident += f" seq {fields['seq']}"
        logger.error(
            "store writer rejected %s %s (the database refused it; not retried): %s",
            kind,
            ident,
            describe_error(exc, self._url),
        )
