"""The store writer: the only way the plugin writes SQL, and never on the request path.

The hot path calls ``submit_event`` / ``submit_state`` / ``submit_session`` / ``submit_message``:
synchronous, O(1), no I/O, no lock held across anything slow, never raising. Rows wait in
buffers (``store.buffers``); one background task writes them in batches, in submission order per
table. When the database is away, rows are kept (up to ``max_buffer`` events and, separately,
``max_buffer`` messages and ``max_buffer`` sessions; more are dropped and counted, because memory
is the only thing protecting the proxy then) and written once it returns. Shutdown flushes, within a deadline.

Why this shape: a proxy must keep serving while its audit database restarts, and a request must
never wait for SQL (design principle 7). Deployment states are coalesced per deployment because
only the latest one is worth a write; session rows per (session, group), their turns summed.
Messages get a bound of their own so that a flood of conversation rows can never push the audit
trail out, and a bound on their total text (``message_buffer_chars``) so that ``max_buffer``
long messages cannot take gigabytes.

Row conversion lives in ``store.rows``, the SQL in ``store.statements``, writing a batch in
``store.batches`` and the start/stop/backoff shape in ``litellm_failover.worker``; this module
is the scheduling: when to write, what to keep, what to count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.events import FailoverEvent
from litellm_failover.looplag import LoopWatch, caused_by_timeout
from litellm_failover.records import DeploymentStateRow, MessageRow, SessionRow
from litellm_failover.settings import WriterSettings
from litellm_failover.store.batches import TableWriter
from litellm_failover.store.buffers import (
    MESSAGE_BUFFER_CHARS,
    RowQueue,
    SessionBuffer,
    StateBuffer,
    message_weight,
)
from litellm_failover.store.engine import create_engine, ensure_sqlite_file, parse_url
from litellm_failover.store.migrate import upgrade_engine
from litellm_failover.store.outage import DatabaseOutage
from litellm_failover.wakeups import RateLimit
from litellm_failover.worker import Backoff, Worker

logger = logging.getLogger("litellm_failover.store")

_DROP_LOG_INTERVAL_S = 10.0


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
        self._database = DatabaseOutage(self._url)
        self._settings = settings or WriterSettings()
        self._migrate = migrate
        self._start_timeout = start_timeout

        self._events: RowQueue[FailoverEvent] = RowQueue(self._settings.max_buffer)
        self._messages: RowQueue[MessageRow] = RowQueue(
            self._settings.max_buffer, message_buffer_chars, message_weight
        )
        self._states = StateBuffer()
        self._sessions = SessionBuffer(self._settings.max_buffer)
        self._tables = TableWriter(
            self._url,
            self._settings.batch_size,
            events=self._events,
            messages=self._messages,
            states=self._states,
            sessions=self._sessions,
            notify=self._notify,
        )
        self._ready = False  # connected (and migrated) once: the tables are there

        self._engine: AsyncEngine | None = None
        ceiling = self._settings.retry_backoff_max_s
        self._worker = Worker(
            "litellm-failover-store-writer",
            logger,
            Backoff(first_s=min(self._settings.flush_interval_s, ceiling), max_s=ceiling),
        )
        self._urgent: asyncio.Event | None = None  # a full batch, flush() or stop(): don't linger
        self._progress: asyncio.Condition | None = None
        self._stopped = False
        self._drop_logs = {
            "events": RateLimit(_DROP_LOG_INTERVAL_S),
            "messages": RateLimit(_DROP_LOG_INTERVAL_S),
            "sessions": RateLimit(_DROP_LOG_INTERVAL_S),
        }

    # ------------------------------------------------------------------ hot path

    def submit_event(self, event: FailoverEvent) -> bool:
        """Queue one audit row. Returns False when it was dropped (buffer full or writer stopped)."""
        return self._offer(self._events, event, "events")

    def submit_message(self, row: MessageRow) -> bool:
        """Queue one conversation message; False when dropped (buffer full or writer stopped).

        A row for a (session, seq) already stored is ignored by the database, not an error.
        """
        return self._offer(self._messages, row, "messages")

    def submit_session(self, row: SessionRow) -> bool:
        """Queue a session's turns and pin; unwritten rows of the same (session, group) merge,
        their turns summed. False when dropped: a new session while ``max_buffer`` sessions
        wait (the database is away, or a client invents a session id per request)."""
        if not self._sessions.add(row):
            self._log_drop(self._sessions, "sessions")
            return False
        self._worker.wake()
        return True

    def _offer(self, queue: RowQueue[Any], row: Any, kind: str) -> bool:
        if self._stopped:
            queue.refuse()
        elif queue.offer(row):
            self._worker.wake()
            if len(queue) >= self._settings.batch_size:
                self._worker.wake(self._urgent)
            return True
        self._log_drop(queue, kind)
        return False

    def submit_state(self, row: DeploymentStateRow) -> None:
        """Queue a deployment's state; a newer one for the same deployment replaces it unwritten."""
        self._states.add(row)
        self._worker.wake()

    def _log_drop(self, queue: RowQueue[Any] | SessionBuffer, kind: str) -> None:
        limit = self._drop_logs[kind]
        if limit.allow():
            held = limit.suppressed
            limit.suppressed = 0
            if self._stopped:
                why = "the writer is stopped"
            else:
                size = f"{len(queue)} rows"
                if isinstance(queue, RowQueue) and queue.max_weight is not None:
                    size += f", {queue.weight:,} of at most {queue.max_weight:,} characters"
                why = f"buffer full ({size}, database {self._database.safe_url}: "
                why += f"{self._database.last_error or 'writes slower than submissions'})"
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
        if self._worker.started:
            return
        if self._stopped:
            raise RuntimeError("StoreWriter cannot be restarted after stop(); create a new one")
        self._urgent = asyncio.Event()
        self._progress = asyncio.Condition()
        self._engine = create_engine(self._url, create_directory=False)
        self._worker.start(
            self._loop_forever,
            crash_message=lambda: f"store writer stopped unexpectedly; {self._queued()} rows left unwritten",
        )
        if self._has_work():
            self._worker.wake()
        await self._worker.wait_attempted(self._start_timeout)

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (public API)
        """Wait until every row submitted before this call is written; True if that happened.

        Rows submitted while waiting are not waited for, so a busy writer cannot keep a caller
        here forever; on a quiet writer this means "until the buffer is empty". False on timeout
        (database down) or when the writer is not running.
        """
        event_target, message_target = self._events.accepted, self._messages.accepted
        state_target, session_target = self._states.seq, self._sessions.seq

        def done() -> bool:
            return (
                self._events.removed >= event_target
                and self._messages.removed >= message_target
                and self._states.done >= state_target
                and self._sessions.done >= session_target
            )

        if done():
            return True
        if not self._worker.running or self._progress is None:
            return False
        self._worker.wake(self._urgent)
        self._worker.wake(self._worker.kick)
        progress = self._progress

        async def wait() -> None:
            async with progress:
                await progress.wait_for(done)

        try:
            async with asyncio.timeout(timeout):
                await wait()
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
        deadline = time.monotonic() + max(timeout, 0.0)
        dispose_budget = min(1.0, timeout * 0.2)
        worker = self._worker
        worker.wake(self._urgent)
        if not await worker.finish(deadline - time.monotonic() - dispose_budget):
            await worker.cancel(deadline - time.monotonic() - dispose_budget / 2)
        if not worker.running and self._has_work() and self._engine is not None:
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
                self._database.safe_url,
                self._database.last_error or "not reached in time",
            )
        if self._engine is not None:
            engine, self._engine = self._engine, None
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    await engine.dispose()
        self._database.connected = False
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
        tables, database = self._tables, self._database
        return {
            "queued": self._queued(),
            "queued_events": len(self._events),
            "queued_states": len(self._states),
            "queued_sessions": len(self._sessions),
            "queued_messages": len(self._messages),
            "queued_message_chars": self._messages.weight,
            "written": tables.written,
            "states_written": tables.states_written,
            "sessions_written": tables.sessions_written,
            "messages_written": tables.messages_written,
            "dropped": self._events.dropped,
            "messages_dropped": self._messages.dropped,
            "sessions_dropped": self._sessions.dropped,
            "rejected": tables.rejected,
            "last_error": database.last_error,
            "last_error_at": database.last_error_at.isoformat() if database.last_error_at else None,
            "connected": database.connected,
            "running": self._worker.running,
            "url": database.safe_url,
            "worker": self._worker.health(),
        }

    # ------------------------------------------------------------------ background task

    def _has_work(self) -> bool:
        return bool(self._events) or bool(self._states) or bool(self._sessions) or bool(self._messages)

    def _queued(self) -> int:
        return len(self._events) + len(self._states) + len(self._sessions) + len(self._messages)

    async def _loop_forever(self) -> None:
        worker = self._worker
        assert worker.wakeup is not None and self._urgent is not None
        while not await self._attempt(self._connect):
            worker.attempted()
            await worker.retry_pause()
        worker.attempted()
        while True:
            if not self._has_work():
                if worker.stopping:
                    return
                worker.wakeup.clear()
                if not self._has_work():  # a thread may have queued a row before the clear
                    await worker.wakeup.wait()
                continue
            if not self._urgent.is_set() and not worker.stopping:
                # Linger so rows arriving close together share one transaction.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.flush_interval_s):
                        await self._urgent.wait()
            self._urgent.clear()
            if not await self._attempt(self._write_pending):
                await worker.retry_pause()

    async def _attempt(self, operation: Callable[[], Awaitable[None]]) -> bool:
        """Run one database operation; on failure record it (safely) and report False."""
        try:
            with LoopWatch() as watch:
                await operation()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_failure(exc, watch.blocked_s if caused_by_timeout(exc) else None)
            await self._notify()
            return False
        self._on_success()
        await self._notify()
        return True

    async def _connect(self) -> None:
        assert self._engine is not None
        ensure_sqlite_file(self._url)
        if self._migrate:
            await upgrade_engine(self._engine, allow_newer=True)
        else:
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        self._ready = True

    async def _write_pending(self) -> None:
        assert self._engine is not None
        await self._tables.write_pending(self._engine)

    async def _notify(self) -> None:
        if self._progress is not None:
            async with self._progress:
                self._progress.notify_all()

    def _on_failure(self, exc: BaseException, blocked_s: float | None = None) -> None:
        self._database.failed(exc, self._queued(), blocked_s)
        self._worker.failed(exc)

    def _on_success(self) -> None:
        self._database.succeeded(self._tables.written, self._queued())
        self._worker.succeeded()
