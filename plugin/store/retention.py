"""The retention purge: every table that can hold request data, each by its own limit.

Sessions idle longer than ``sessions.retention_s`` go with their messages
(``conversations.purge_expired``); events older than ``retention.events_s`` and commands older
than ``retention.commands_s`` go too (``expiry``). It runs whether or not sessions are enabled:
rows written while they were on, and events, still have to expire.

A background task, every ``sessions.purge_interval_s``: it borrows an engine (normally the store
writer's, so it runs on the database the plugin writes to and only once that is migrated), runs
the purges and records what it did for status pages. A database error is
logged and the next round comes as usual: retention is housekeeping, and it must never take the
plugin down with it. The first round runs right after ``start``, so a proxy restarted often still
purges; while no engine is available (the database not reached yet) it checks again soon rather
than waiting a whole interval. The task is the plugin's one worker shape
(``litellm_failover.worker``).

It runs whatever ``store_messages`` / ``store_content`` say now: rows stored before a privacy
setting was tightened still have to expire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.events import utcnow
from litellm_failover.settings import RetentionSettings, SessionSettings
from litellm_failover.store.conversations import purge_expired
from litellm_failover.store.engine import describe_error
from litellm_failover.store.expiry import purge_commands, purge_events
from litellm_failover.worker import Worker

logger = logging.getLogger("litellm_failover.store")

_NO_ENGINE_RETRY_S = 30.0  # waiting for the writer's first connection: look again after this
_STOP_WAIT_S = 5.0  # for a cancelled purge to roll its open batch back


class _HasEngine(Protocol):
    @property
    def engine(self) -> AsyncEngine | None: ...


EngineSource = _HasEngine | AsyncEngine | Callable[[], AsyncEngine | None]


def _engine_getter(source: EngineSource) -> Callable[[], AsyncEngine | None]:
    if isinstance(source, AsyncEngine):
        return lambda: source
    if hasattr(source, "engine"):
        return lambda: source.engine  # a StoreWriter: None until it has connected
    if callable(source):
        return source
    raise TypeError(f"RetentionPurger needs a StoreWriter, an AsyncEngine or a callable, not {source!r}")


class RetentionPurger:
    """``start()`` / ``stop()`` (or ``async with``) a periodic purge; ``stats()`` for status.

    ``source``: a ``StoreWriter`` (its ``engine`` property), an ``AsyncEngine``, or a callable
    returning an engine or None. The purger never disposes of the engine: it only borrows it.
    ``clock`` gives "now" (UTC) and exists for tests.
    """

    def __init__(
        self,
        source: EngineSource,
        settings: SessionSettings,
        retention: RetentionSettings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._get_engine = _engine_getter(source)
        self._settings = settings
        self._retention = retention or RetentionSettings()
        self._others = {"events": 0, "commands": 0, "command_results": 0, "control_replicas": 0}
        self._last_others: dict[str, int] | None = None
        self._clock = clock
        self._worker = Worker("litellm-failover-retention-purge", logger)
        self._runs = 0
        self._sessions_purged = 0
        self._messages_purged = 0
        self._last_purge_at: datetime | None = None
        self._last_counts: tuple[int, int] | None = None
        self._last_duration_s: float | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None

    async def start(self) -> None:
        self._worker.start(self._loop)

    async def stop(self) -> None:
        """Cancel the loop; a purge in progress is cut short (its open batch rolls back)."""
        await self._worker.stop(grace_s=0.0, cancel_wait_s=_STOP_WAIT_S)

    async def __aenter__(self) -> RetentionPurger:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def purge_now(self) -> tuple[int, int] | None:
        """One purge round now: (session rows, messages) deleted, or None when no engine is
        available or the database failed (logged, and recorded in ``stats()``). Never raises
        for a database error."""
        engine = self._get_engine()
        if engine is None:
            return None
        now = self._clock()
        started = time.monotonic()
        try:
            counts = await purge_expired(engine, now - timedelta(seconds=self._settings.retention_s))
            events = await purge_events(engine, now - timedelta(seconds=self._retention.events_s))
            commands = await purge_commands(engine, now - timedelta(seconds=self._retention.commands_s))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._worker.failed(exc)
            message = describe_error(exc, engine.url)
            if message != self._last_error:  # one line per distinct error, not one an hour
                logger.warning("retention purge failed, retrying next round: %s", message)
            self._last_error, self._last_error_at = message, now
            return None
        self._worker.succeeded()
        self._runs += 1
        self._last_purge_at = now
        self._last_counts = counts
        self._last_duration_s = time.monotonic() - started
        self._sessions_purged += counts[0]
        self._messages_purged += counts[1]
        others = dict(zip(self._others, (events, *commands), strict=True))
        for name, count in others.items():
            self._others[name] += count
        self._last_others = others
        self._last_error = None
        if any(others.values()):
            logger.info("retention purge: deleted %s", ", ".join(f"{n} {name}" for name, n in others.items()))
        if counts != (0, 0):
            logger.info(
                "session retention purge: %d session rows and %d messages idle for more than %gs deleted",
                counts[0],
                counts[1],
                self._settings.retention_s,
            )
        return counts

    async def _loop(self) -> None:
        interval = self._settings.purge_interval_s
        while not self._worker.stopping:
            try:
                done = await self.purge_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug, not a database error: keep the loop, say so loudly
                self._worker.failed(exc)
                logger.exception("session retention purge crashed; trying again next round")
                done = None
            waiting_for_engine = done is None and self._get_engine() is None
            await self._worker.pause(min(interval, _NO_ENGINE_RETRY_S) if waiting_for_engine else interval)

    def stats(self) -> dict[str, Any]:
        """For status: when the last purge ran, what it deleted, totals and the last error."""
        last = self._last_counts
        return {
            "running": self._worker.running,
            "retention_s": self._settings.retention_s,
            "interval_s": self._settings.purge_interval_s,
            "runs": self._runs,
            "last_purge_at": self._last_purge_at.isoformat() if self._last_purge_at else None,
            "last_purge_sessions": last[0] if last else None,
            "last_purge_messages": last[1] if last else None,
            "last_purge_duration_s": self._last_duration_s,
            "sessions_purged": self._sessions_purged,
            "messages_purged": self._messages_purged,
            "events_retention_s": self._retention.events_s,
            "commands_retention_s": self._retention.commands_s,
            "last_purge_other": self._last_others,
            **{f"{name}_purged": count for name, count in self._others.items()},
            "last_error": self._last_error,
            "last_error_at": self._last_error_at.isoformat() if self._last_error_at else None,
            "worker": self._worker.health(),
        }
