"""The store writer: the only way the plugin writes SQL, and never on the request path.

The hot path calls ``submit_event`` / ``submit_state`` / ``submit_session`` / ``submit_message``:
synchronous, O(1), no I/O, no lock held across anything slow, never raising. Rows wait in
buffers (``store.buffers``); one background task writes them in batches, in submission order per
table. When the database is away, rows are kept (up to ``max_buffer`` events and, separately,
``max_buffer`` messages; more are dropped and counted, because memory is the only thing protecting
the proxy then) and written once it returns. Shutdown flushes, within a deadline.

Why this shape: a proxy must keep serving while its audit database restarts, and a request must
never wait for SQL (design principle 7). Deployment states are coalesced per deployment because
only the latest one is worth a write; session rows per (session, group), their turns summed.
Messages get a bound of their own so that a flood of conversation rows can never push the audit
trail out, and a bound on their total text (``message_buffer_chars``) so that ``max_buffer``
long messages cannot take gigabytes.

Row conversion lives in ``store.rows`` and the SQL in ``store.statements``; this module is the
scheduling: when to write, what to keep, what to count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.events import DeploymentStateRow, FailoverEvent, MessageRow, SessionRow, utcnow
from litellm_failover.settings import WriterSettings
from litellm_failover.store.buffers import RowQueue, SessionBuffer
from litellm_failover.store.engine import (
    create_engine,
    describe_error,
    ensure_sqlite_directory,
    parse_url,
    redact_url,
)
from litellm_failover.store.migrate import upgrade_engine
from litellm_failover.store.rows import event_row, message_row, session_row, state_row
from litellm_failover.store.statements import insert_events, insert_messages, upsert_sessions, upsert_states
from litellm_failover.wakeups import RateLimit, wake

logger = logging.getLogger("litellm_failover.store")

_DROP_LOG_INTERVAL_S = 10.0
_IDENT_FIELDS = ("event_id", "deployment_id", "session_id", "seq")  # how a refused row is named
_ERROR_LOG_INTERVAL_S = 60.0
MESSAGE_BUFFER_CHARS = 64_000_000
"""Default bound on the text of buffered messages (about 64 MB of ASCII): with the default
``max_buffer`` that is 6,400 characters a message on average, and a full buffer of the longest
messages (``max_message_chars``) cannot exhaust a proxy's memory."""


def _message_weight(row: MessageRow) -> int:
    return len(row.content) if isinstance(row.content, str) else 0


def _is_row_error(exc: BaseException) -> bool:
    """The database refused these rows (retrying cannot help), as opposed to being unreachable."""
    if isinstance(exc, (DataError, IntegrityError)):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


class StoreWriter:
    """Batched, bounded, retrying writer for the store's four tables.

    Use ``async with StoreWriter(url, settings):`` or ``await start()`` / ``await stop()``.
    ``submit_*`` may be called before ``start`` (rows wait) and from other threads (the buffer
    operations are atomic and the wake-up goes through ``call_soon_threadsafe``), but the
    asyncio methods belong to the loop that called ``start``.
    """

    def __init__(
        self,
        database_url: str,
        settings: WriterSettings | None = None,
        *,
        migrate: bool = True,
        start_timeout: float = 2.0,
        message_buffer_chars: int = MESSAGE_BUFFER_CHARS,
    ) -> None:
        # A malformed URL is a configuration error: raise now, not in a background task.
        self._url = parse_url(database_url)
        self._safe_url = redact_url(self._url)
        self._settings = settings or WriterSettings()
        self._migrate = migrate
        self._start_timeout = start_timeout

        self._events: RowQueue[FailoverEvent] = RowQueue(self._settings.max_buffer)
        self._messages: RowQueue[MessageRow] = RowQueue(
            self._settings.max_buffer, message_buffer_chars, _message_weight
        )
        self._states: dict[str, tuple[int, DeploymentStateRow]] = {}
        self._sessions = SessionBuffer()
        self._state_seq = 0  # submit_state calls so far
        self._state_done = 0  # every state submitted up to this number is persisted
        self._written = 0
        self._states_written = 0
        self._sessions_written = 0
        self._messages_written = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._connected = False
        self._ready = False  # connected (and migrated) once: the tables are there

        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pending: asyncio.Event | None = None  # anything queued at all
        self._urgent: asyncio.Event | None = None  # a full batch, flush() or stop(): don't linger
        self._kick: asyncio.Event | None = None  # flush() or stop(): retry now, not after backoff
        self._first_attempt: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._stopping = False
        self._stopped = False
        self._backoff_s = 0.0
        self._drop_logs = {
            "events": RateLimit(_DROP_LOG_INTERVAL_S),
            "messages": RateLimit(_DROP_LOG_INTERVAL_S),
        }
        self._error_log = RateLimit(_ERROR_LOG_INTERVAL_S)
        self._logged_error: str | None = None

    # ------------------------------------------------------------------ hot path

    def submit_event(self, event: FailoverEvent) -> bool:
        """Queue one audit row. Returns False when it was dropped (buffer full or writer stopped)."""
        return self._offer(self._events, event, "events")

    def submit_message(self, row: MessageRow) -> bool:
        """Queue one conversation message; False when dropped (buffer full or writer stopped).

        A row for a (session, seq) already stored is ignored by the database, not an error.
        """
        return self._offer(self._messages, row, "messages")

    def submit_session(self, row: SessionRow) -> None:
        """Queue a session's turns and pin; unwritten rows of the same (session, group) merge,
        their turns summed. Never dropped: the map holds one entry per live session."""
        self._sessions.add(row)
        self._wake(self._pending)

    def _offer(self, queue: RowQueue[Any], row: Any, kind: str) -> bool:
        if self._stopped:
            queue.refuse()
        elif queue.offer(row):
            self._wake(self._pending)
            if len(queue) >= self._settings.batch_size:
                self._wake(self._urgent)
            return True
        self._log_drop(queue, kind)
        return False

    def submit_state(self, row: DeploymentStateRow) -> None:
        """Queue a deployment's state; a newer one for the same deployment replaces it unwritten."""
        self._state_seq += 1
        self._states[row.deployment_id] = (self._state_seq, row)
        self._wake(self._pending)

    def _wake(self, event: asyncio.Event | None) -> None:
        wake(event, self._loop, self._loop_thread)

    def _log_drop(self, queue: RowQueue[Any], kind: str) -> None:
        limit = self._drop_logs[kind]
        if limit.allow():
            held = limit.suppressed
            limit.suppressed = 0
            if self._stopped:
                why = "the writer is stopped"
            else:
                size = f"{len(queue)} rows"
                if queue.max_weight is not None:
                    size += f", {queue.weight:,} of at most {queue.max_weight:,} characters"
                why = f"buffer full ({size}, database {self._safe_url}: "
                why += f"{self._last_error or 'writes slower than submissions'})"
            logger.warning(
                "store writer dropping new %s: %s; %d dropped so far%s",
                kind,
                why,
                queue.dropped,
                f" ({held} since the last warning)" if held else "",
            )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the background task; return once the database answered, or promptly if it is down.

        A reachable database is migrated before this returns (bounded by ``start_timeout``), so
        callers that start the writer and then read find the tables there. An unreachable one is
        retried in the background with backoff; nothing here raises for it.
        """
        if self._task is not None:
            return
        if self._stopped:
            raise RuntimeError("StoreWriter cannot be restarted after stop(); create a new one")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._pending = asyncio.Event()
        self._urgent = asyncio.Event()
        self._kick = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._progress = asyncio.Condition()
        if self._has_work():
            self._pending.set()
        self._engine = create_engine(self._url, create_directory=False)
        self._task = asyncio.create_task(self._run(), name="litellm-failover-store-writer")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self._start_timeout)

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (public API)
        """Wait until every row submitted before this call is written; True if that happened.

        Rows submitted while waiting are not waited for, so a busy writer cannot keep a caller
        here forever; on a quiet writer this means "until the buffer is empty". False on timeout
        (database down) or when the writer is not running.
        """
        event_target, message_target = self._events.accepted, self._messages.accepted
        state_target, session_target = self._state_seq, self._sessions.seq

        def done() -> bool:
            return (
                self._events.removed >= event_target
                and self._messages.removed >= message_target
                and self._state_done >= state_target
                and self._sessions.done >= session_target
            )

        if done():
            return True
        if self._task is None or self._task.done() or self._progress is None:
            return False
        self._wake(self._urgent)
        self._wake(self._kick)

        async def wait() -> None:
            assert self._progress is not None
            async with self._progress:
                await self._progress.wait_for(done)

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return done()
        return True

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (public API)
        """Flush what can be flushed within ``timeout``, then release the engine. Never hangs longer.

        Rows still unwritten at the deadline are counted in the log line and left in ``stats()``.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        deadline = time.monotonic() + max(timeout, 0.0)
        dispose_budget = min(1.0, timeout * 0.2)
        task = self._task
        if task is not None and not task.done():
            self._wake(self._pending)
            self._wake(self._urgent)
            self._wake(self._kick)
            # asyncio.wait neither cancels on timeout nor raises the task's outcome: a cancellation
            # of stop() itself still propagates.
            await asyncio.wait({task}, timeout=max(deadline - time.monotonic() - dispose_budget, 0))
            if not task.done():
                task.cancel()
                await asyncio.wait(
                    {task}, timeout=max(deadline - time.monotonic() - dispose_budget / 2, 0.01)
                )
        if (task is None or task.done()) and self._has_work() and self._engine is not None:
            # At shutdown the event loop cancels every task at once, this writer's own too: flush
            # from here instead, so rows held for batching still reach the table.
            while self._has_work() and time.monotonic() < deadline - dispose_budget:
                if not await self._attempt(self._write_pending):
                    break
        left = self._queued()
        if left:
            logger.warning(
                "store writer stopped with %d rows unwritten (database %s: %s)",
                left,
                self._safe_url,
                self._last_error or "not reached in time",
            )
        if self._engine is not None:
            engine, self._engine = self._engine, None
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(engine.dispose(), max(deadline - time.monotonic(), 0.01))
        self._connected = False
        self._ready = False

    @property
    def engine(self) -> AsyncEngine | None:
        """The writer's engine, for reads by the running plugin (``store.conversations``): None
        until the first connection (and migration) succeeded, and again after ``stop``.

        Borrow it, never dispose of it; reads through it may fail while the database is away.
        """
        return self._engine if self._ready else None

    async def __aenter__(self) -> StoreWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters for status pages and metrics; the URL and errors are free of credentials."""
        return {
            "queued": self._queued(),
            "queued_events": len(self._events),
            "queued_states": len(self._states),
            "queued_sessions": len(self._sessions),
            "queued_messages": len(self._messages),
            "queued_message_chars": self._messages.weight,
            "written": self._written,
            "states_written": self._states_written,
            "sessions_written": self._sessions_written,
            "messages_written": self._messages_written,
            "dropped": self._events.dropped,
            "messages_dropped": self._messages.dropped,
            "rejected": self._rejected,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at.isoformat() if self._last_error_at else None,
            "connected": self._connected,
            "running": self._task is not None and not self._task.done(),
            "url": self._safe_url,
        }

    # ------------------------------------------------------------------ background task

    def _has_work(self) -> bool:
        return bool(self._events) or bool(self._states) or bool(self._sessions) or bool(self._messages)

    async def _run(self) -> None:
        try:
            await self._loop_forever()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not a database error (those are caught per attempt)
            logger.exception("store writer stopped unexpectedly; %d rows left unwritten", self._queued())

    def _queued(self) -> int:
        return len(self._events) + len(self._states) + len(self._sessions) + len(self._messages)

    async def _loop_forever(self) -> None:
        assert self._pending is not None and self._urgent is not None and self._first_attempt is not None
        while not await self._attempt(self._connect):
            self._first_attempt.set()
            await self._backoff()
        self._first_attempt.set()
        while True:
            if not self._has_work():
                if self._stopping:
                    return
                self._pending.clear()
                if not self._has_work():  # a thread may have queued a row before the clear
                    await self._pending.wait()
                continue
            if not self._urgent.is_set() and not self._stopping:
                # Linger so rows arriving close together share one transaction.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._settings.flush_interval_s)
            self._urgent.clear()
            if not await self._attempt(self._write_pending):
                await self._backoff()

    async def _attempt(self, operation: Any) -> bool:
        """Run one database operation; on failure record it (safely) and report False."""
        try:
            await operation()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_failure(exc)
            await self._notify()
            return False
        self._on_success()
        await self._notify()
        return True

    async def _connect(self) -> None:
        assert self._engine is not None
        ensure_sqlite_directory(self._url)
        if self._migrate:
            await upgrade_engine(self._engine, allow_newer=True)
        else:
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        self._ready = True

    async def _write_pending(self) -> None:
        """Write the rows queued now, table by table (not those arriving meanwhile: every table
        must get a turn). Sessions go before messages, so a reader who finds a message finds
        its session too."""
        self._written += await self._drain(self._events, self._write_events)
        await self._write_pending_states()
        await self._write_pending_sessions()
        self._messages_written += await self._drain(self._messages, self._write_messages)

    async def _drain(self, queue: RowQueue[Any], write: Callable[[list[Any]], Any]) -> int:
        """Write what ``queue`` holds now, oldest first, a batch per transaction; rows written."""
        written = 0
        remaining = len(queue)
        while remaining > 0:
            batch = queue.head(min(remaining, self._settings.batch_size))
            written += await write(batch)
            queue.pop(len(batch))
            remaining -= len(batch)
            await self._notify()
        return written

    async def _write_pending_states(self) -> None:
        if self._states:
            seq_at_snapshot = self._state_seq
            snapshot = dict(self._states)
            await self._write_states([row for _, row in snapshot.values()])
            for key, entry in snapshot.items():
                if self._states.get(key) is entry:
                    del self._states[key]
            self._state_done = seq_at_snapshot
            self._states_written += len(snapshot)

    async def _write_pending_sessions(self) -> None:
        assert self._engine is not None
        seq, taken = self._sessions.take()
        written = False
        try:
            if taken:
                values = self._convert(taken, lambda e: session_row(e.row, e.created_at), "session")
                await self._execute(upsert_sessions(self._engine.dialect.name), values, "session")
            written = True
        finally:
            # Unreachable (or cancelled at shutdown): the turns go back for the next attempt. If
            # the one-by-one fallback had already committed some rows, those turns count twice:
            # that takes a refused row and an outage in the same write, and costs a turn count.
            self._sessions.settle(seq, written=written)
        self._sessions_written += len(taken)

    async def _write_events(self, batch: list[FailoverEvent]) -> int:
        assert self._engine is not None
        rows = self._convert(batch, event_row, "event")
        return await self._execute(insert_events(self._engine.dialect.name), rows, "event")

    async def _write_messages(self, batch: list[MessageRow]) -> int:
        assert self._engine is not None
        rows = self._convert(batch, message_row, "message")
        return await self._execute(insert_messages(self._engine.dialect.name), rows, "message")

    async def _write_states(self, rows: list[DeploymentStateRow]) -> None:
        assert self._engine is not None
        values = self._convert(rows, state_row, "deployment state")
        await self._execute(upsert_states(self._engine.dialect.name), values, "deployment state")

    def _convert(self, items: list[Any], convert: Any, kind: str) -> list[dict[str, Any]]:
        rows = []
        for item in items:
            try:
                rows.append(convert(item))
            except Exception as exc:
                self._reject(kind, item, exc)
        return rows

    async def _execute(self, stmt: Any, rows: list[dict[str, Any]], kind: str) -> int:
        """All rows in one transaction (executemany); the number written.

        If the database refuses the batch for its content rather than for being unreachable,
        the rows are retried one by one and the refused ones dropped and counted: one bad row
        must never hold back every row behind it.
        """
        assert self._engine is not None
        if not rows:
            return 0
        try:
            async with self._engine.begin() as connection:
                await connection.execute(stmt, rows)
            return len(rows)
        except Exception as exc:
            if not _is_row_error(exc):
                raise
        written = 0
        for row in rows:
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(stmt, [row])
                written += 1
            except Exception as exc:
                if not _is_row_error(exc):
                    raise
                self._reject(kind, row, exc)
        return written

    def _reject(self, kind: str, row: Any, exc: BaseException) -> None:
        self._rejected += 1
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

    async def _notify(self) -> None:
        if self._progress is not None:
            async with self._progress:
                self._progress.notify_all()

    def _on_failure(self, exc: BaseException) -> None:
        message = describe_error(exc, self._url)
        self._last_error = message
        self._last_error_at = utcnow()
        was_connected, self._connected = self._connected, False
        changed = was_connected or message != self._logged_error
        if self._error_log.allow(force=changed):
            logger.warning(
                "store database %s unavailable, keeping %d rows and retrying: %s",
                self._safe_url,
                self._queued(),
                message,
            )
            self._logged_error = message
        ceiling = self._settings.retry_backoff_max_s
        first = min(self._settings.flush_interval_s, ceiling)
        self._backoff_s = min(ceiling, max(self._backoff_s * 2, first))

    def _on_success(self) -> None:
        if self._logged_error is not None:
            logger.info(
                "store database %s reachable again (%d events written in all, %d rows still queued)",
                self._safe_url,
                self._written,
                self._queued(),
            )
            self._logged_error = None
            self._error_log.reset()
        self._connected = True
        self._backoff_s = 0.0

    async def _backoff(self) -> None:
        """Wait before retrying; flush() and stop() cut the wait short, new rows do not.

        A kick that arrived while the failed attempt ran is honoured (not cleared beforehand),
        so a stop() racing a failure does not sit out a whole backoff.
        """
        assert self._kick is not None
        delay = self._backoff_s * random.uniform(0.8, 1.2)  # replicas must not retry in lockstep
        if self._stopping:
            delay = min(delay, 0.25)  # stop() has a deadline: keep trying until it passes
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), delay)
        self._kick.clear()
