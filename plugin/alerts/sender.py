"""Handing one alert to one destination: attempts, backoff between them, and what went wrong.

Each destination is retried on its own (one slow webhook must not hold back the chat service),
with the alerter's worker backoff (exponential with jitter, bounded by ``retry_backoff_max_s``),
which ``stop()`` cuts short: while stopping, retries come fast until its deadline. At most
``MAX_CONCURRENT_SENDS`` sends run at once across all destinations, so a burst of alerts cannot
open a hundred sockets. Errors are kept as the destination's name and the delivery error's own
words (``DeliveryError`` messages carry no token); any other exception is named only by its
class, because a library's text may quote the URL with its secret.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from litellm_failover.alerts.delivery import DeliveryError, Target
from litellm_failover.alerts.message import AlertMessage
from litellm_failover.events import utcnow
from litellm_failover.wakeups import RateLimit
from litellm_failover.worker import Worker

if TYPE_CHECKING:
    from litellm_failover.settings import AlertSettings

logger = logging.getLogger("litellm_failover.alerts")

MAX_CONCURRENT_SENDS = 8  # across all destinations: a burst must not open a hundred sockets
_ERROR_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class SendResult:
    """How handing one alert to one destination ended."""

    delivered: bool
    attempts: int
    error: str  # the last attempt's, "" when delivered at the first


class Sender:
    """Counts deliveries (one alert to one destination) for ``Alerter.stats()``."""

    def __init__(self, settings: AlertSettings, worker: Worker) -> None:
        self._settings = settings
        self._worker = worker  # its backoff, and its kick that stop() uses to cut waits short
        self._sends: asyncio.Semaphore | None = None
        self.sent = 0
        self.failed = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._error_log = RateLimit(_ERROR_LOG_INTERVAL_S)

    def start(self) -> None:
        """On the loop that will send (the semaphore belongs to it)."""
        self._sends = asyncio.Semaphore(MAX_CONCURRENT_SENDS)

    async def send(self, target: Target, message: AlertMessage) -> SendResult:
        """Attempts until delivered or ``max_attempts``."""
        assert self._sends is not None and self._worker.backoff is not None
        attempts = 0
        error = ""
        while True:
            attempts += 1
            async with self._sends:
                try:
                    await target.send(message, self._settings.timeout_s)
                except DeliveryError as exc:
                    error = str(exc)
                    self._worker.failed(exc)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a library surprise: its text may quote the URL
                    error = f"unexpected {type(exc).__name__}"
                    self._worker.failed(exc)
                else:
                    self.sent += 1
                    self._worker.succeeded()
                    if attempts > 1:
                        logger.info("alerting: %s took the alert after %d attempts", target.name, attempts)
                    return SendResult(True, attempts, error)
            self._record_error(target, error, attempts)
            if attempts >= self._settings.max_attempts:
                break
            self.retries += 1
            await self._worker.pause(self._worker.backoff.delay(attempts))
        self.failed += 1
        return SendResult(False, attempts, error)

    def _record_error(self, target: Target, error: str, attempt: int) -> None:
        message = f"{target.name}: {error}"
        changed = message != self.last_error
        self.last_error = message
        self.last_error_at = utcnow()
        if self._error_log.allow(force=changed):
            logger.warning(
                "alerting: attempt %d of %d to %s failed: %s",
                attempt,
                self._settings.max_attempts,
                target.name,
                error,
            )
