"""Every database and Redis call of the control plane: bounded, and never raising.

A control plane must keep its replica serving while the database or Redis is away, so each call
is bounded (``asyncio.timeout``) and a failure becomes None for the caller to retry next round,
an error in ``status()`` with no credential in it, and a warning at most once per interval that
says how many were held back. Not ``asyncio.wait_for``: on Python 3.11 it can swallow a
cancellation that arrives just as the call completes, and ``stop`` would then wait for a loop
that went on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal

from litellm_failover.looplag import LoopWatch, blocked_loop_message
from litellm_failover.store.engine import describe_error, redact
from litellm_failover.wakeups import RateLimit

logger = logging.getLogger("litellm_failover.control")

Service = Literal["database", "redis"]

_WARN_INTERVAL_S = 30.0
DATABASE_TIMEOUT_S = 10.0  # one poll, heartbeat or result write; the next round tries again


class Guard:
    """``await guard.database(work)`` / ``await guard.redis(work)``: the result, True for a None
    result (so None always means "failed"), or None when the call failed or timed out."""

    def __init__(self, redis_url: str | None, redis_timeout_s: float) -> None:
        self._redis_url = redis_url
        self._redis_timeout_s = redis_timeout_s
        self.errors: dict[Service, str | None] = {"database": None, "redis": None}  # the last, if failing
        self._warnings = {"database": RateLimit(_WARN_INTERVAL_S), "redis": RateLimit(_WARN_INTERVAL_S)}

    async def database(self, work: Coroutine[Any, Any, Any]) -> Any:
        return await self._guarded("database", work, DATABASE_TIMEOUT_S)

    async def redis(self, work: Coroutine[Any, Any, Any]) -> Any:
        return await self._guarded("redis", work, self._redis_timeout_s)

    async def _guarded(self, what: Service, work: Coroutine[Any, Any, Any], limit_s: float) -> Any:
        try:
            with LoopWatch() as watch:
                async with asyncio.timeout(limit_s):
                    result = await work
        except Exception as exc:
            # A deadline that passed while the loop stood still is not the service's fault:
            # blaming it would send an operator to a healthy database.
            blocked_s = watch.blocked_s if isinstance(exc, TimeoutError) else None
            blocked = blocked_loop_message(blocked_s, what) if blocked_s is not None else None
            if blocked is not None:
                error = f"TimeoutError: {blocked}"
            elif what == "database":
                error = describe_error(exc)
            else:
                text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                error = redact(text[:300], self._redis_url)
            self.errors[what] = error
            if (held := self._warnings[what].due()) is not None:
                more = f" ({held} similar errors not logged)" if held else ""
                if blocked is not None:
                    logger.warning("control: %s call timed out: %s; retrying%s", what, blocked, more)
                else:
                    logger.warning("control: %s unavailable (%s); retrying%s", what, error, more)
            return None
        self.errors[what] = None
        return result if result is not None else True
