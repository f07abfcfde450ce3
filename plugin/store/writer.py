"""The store writer: the only way the plugin writes SQL, and never on the request path.

The hot path calls ``submit_event`` / ``submit_state``: synchronous, O(1), no I/O, no lock held
across anything slow, never raising. Rows wait in a bounded buffer; one background task writes
them in batches, in submission order. When the database is away, rows are kept (up to
``max_buffer`` events; more are dropped and counted, because memory is the only thing protecting
the proxy then) and written once it returns. Shutdown flushes, within a deadline.

Why this shape: a proxy must keep serving while its audit database restarts, and a request must
never wait for SQL (design principle 7). Deployment states are coalesced per deployment because
only the latest one is worth a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import threading
import time
from collections import deque
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.events import DeploymentStateRow, FailoverEvent, utcnow
from litellm_failover.settings import WriterSettings
from litellm_failover.store.engine import (
    create_engine,
    describe_error,
    ensure_sqlite_directory,
    parse_url,
    redact_url,
)
from litellm_failover.store.migrate import upgrade_engine
from litellm_failover.store.rows import event_row, state_row
from litellm_failover.store.statements import insert_events, upsert_states

logger = logging.getLogger("litellm_failover.store")

_DROP_LOG_INTERVAL_S = 10.0
_ERROR_LOG_INTERVAL_S = 60.0


def _is_row_error(exc: BaseException) -> bool:
    """The database refused these rows (retrying cannot help), as opposed to being unreachable."""
    if isinstance(exc, (DataError, IntegrityError)):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


class _RateLimit:
    """At most one log line per interval; counts what it held back, so the next line can say so."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0
        self.suppressed = 0

    def allow(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now >= self._next:
            self._next = now + self.interval_s
            return True
        self.suppressed += 1
        return False

    def reset(self) -> None:
        self._next = 0.0
        self.suppressed = 0


class StoreWriter:
    """Batched, bounded, retrying writer for ``failover_events`` and ``failover_deployment_state``.

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
    ) -> None:
        # A malformed URL is a configuration error: raise now, not in a background task.
        self._url = parse_url(database_url)
        self._safe_url = redact_url(self._url)
        self._settings = settings or WriterSettings()
        self._migrate = migrate
        self._start_timeout = start_timeout

        self._events: deque[FailoverEvent] = deque()
        self._states: dict[str, tuple[int, DeploymentStateRow]] = {}
        self._accepted = 0  # events ever appended
        self._removed = 0  # events ever taken off the buffer (written or rejected)
        self._state_seq = 0  # submit_state calls so far
        self._state_done = 0  # every state submitted up to this number is persisted
        self._written = 0
        self._states_written = 0
        self._dropped = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._connected = False

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
        self._drop_log = _RateLimit(_DROP_LOG_INTERVAL_S)
        self._error_log = _RateLimit(_ERROR_LOG_INTERVAL_S)
        self._logged_error: str | None = None

    # ------------------------------------------------------------------ hot path

    def submit_event(self, event: FailoverEvent) -> bool:
        """Queue one audit row. Returns False when it was dropped (buffer full or writer stopped)."""
        if len(self._events) >= self._settings.max_buffer or self._stopped:
            self._dropped += 1
            self._log_drop()
            return False
        self._events.append(event)
        self._accepted += 1
        self._wake(self._pending)
        if len(self._events) >= self._settings.batch_size:
            self._wake(self._urgent)
        return True

    def submit_state(self, row: DeploymentStateRow) -> None:
        """Queue a deployment's state; a newer one for the same deployment replaces it unwritten."""
        self._state_seq += 1
        self._states[row.deployment_id] = (self._state_seq, row)
        self._wake(self._pending)

    def _wake(self, event: asyncio.Event | None) -> None:
        if event is None or event.is_set():
            return
        try:
            if threading.get_ident() == self._loop_thread:
                event.set()
            elif self._loop is not None:
                self._loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed: the rows stay queued, nothing to wake
            pass

    def _log_drop(self) -> None:
        if self._drop_log.allow():
            held = self._drop_log.suppressed
            self._drop_log.suppressed = 0
            if self._stopped:
                why = "the writer is stopped"
            else:
                why = f"buffer full ({self._settings.max_buffer} rows, database {self._safe_url}: "
                why += f"{self._last_error or 'writes slower than submissions'})"
            logger.warning(
                "store writer dropping new events: %s; %d dropped so far%s",
                why,
                self._dropped,
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
        if self._events or self._states:
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
        event_target, state_target = self._accepted, self._state_seq

        def done() -> bool:
            return self._removed >= event_target and self._state_done >= state_target

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
            "written": self._written,
            "states_written": self._states_written,
            "dropped": self._dropped,
            "rejected": self._rejected,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at.isoformat() if self._last_error_at else None,
            "connected": self._connected,
            "running": self._task is not None and not self._task.done(),
            "url": self._safe_url,
        }

    # ------------------------------------------------------------------ background task

    def _has_work(self) -> bool:
        return bool(self._events) or bool(self._states)

    async def _run(self) -> None:
        try:
            await self._loop_forever()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not a database error (those are caught per attempt)
            logger.exception("store writer stopped unexpectedly; %d rows left unwritten", self._queued())

    def _queued(self) -> int:
        return len(self._events) + len(self._states)

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

    async def _write_pending(self) -> None:
        """Write the events queued now (not those arriving meanwhile: states must get a turn too)."""
        remaining = len(self._events)
        while remaining > 0:
            batch = list(itertools.islice(self._events, min(remaining, self._settings.batch_size)))
            written = await self._write_events(batch)
            for _ in batch:
                self._events.popleft()
            self._removed += len(batch)
            self._written += written
            remaining -= len(batch)
            await self._notify()
        if self._states:
            seq_at_snapshot = self._state_seq
            snapshot = dict(self._states)
            await self._write_states([row for _, row in snapshot.values()])
            for key, entry in snapshot.items():
                if self._states.get(key) is entry:
                    del self._states[key]
            self._state_done = seq_at_snapshot
            self._states_written += len(snapshot)

    async def _write_events(self, batch: list[FailoverEvent]) -> int:
        assert self._engine is not None
        rows = self._convert(batch, event_row, "event")
        return await self._execute(insert_events(self._engine.dialect.name), rows, "event")

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
        if isinstance(row, dict):
            ident = row.get("id") or row.get("deployment_id")
        else:
            ident = getattr(row, "event_id", None) or getattr(row, "deployment_id", "?")
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
