"""What the store writer knows and says about its database: reachable or not, and why not.

An outage is logged when it starts, again at most once a minute while it lasts unless the error
changes (a database restart can take minutes, and a warning per retry would bury everything else),
and once when it ends. The error is kept as ``describe_error`` words it: no SQL, no parameters,
no credentials, so it can go to logs and ``status()`` alike.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import URL

from litellm_failover.events import utcnow
from litellm_failover.looplag import blocked_loop_message
from litellm_failover.store.engine import describe_error, redact_url
from litellm_failover.wakeups import RateLimit

logger = logging.getLogger("litellm_failover.store")

_ERROR_LOG_INTERVAL_S = 60.0


class DatabaseOutage:
    """The writer's view of its database; ``failed`` and ``succeeded`` after every attempt."""

    def __init__(self, url: URL) -> None:
        self._url = url
        self.safe_url = redact_url(url)
        self.connected = False
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._log = RateLimit(_ERROR_LOG_INTERVAL_S)
        self._logged_error: str | None = None  # the outage being reported, None when there is none

    def failed(self, exc: BaseException, queued: int, blocked_s: float | None = None) -> None:
        """``blocked_s``: the call timed out while the event loop stood still that long (see
        ``looplag``), so the words name the loop, not the database."""
        message = describe_error(exc, self._url)
        if blocked_s is not None:
            message = f"{message}: {blocked_loop_message(blocked_s, 'database')}"
        self.last_error = message
        self.last_error_at = utcnow()
        was_connected, self.connected = self.connected, False
        changed = was_connected or message != self._logged_error
        if self._log.allow(force=changed):
            logger.warning(
                "store database %s %s, keeping %d rows and retrying: %s",
                self.safe_url,
                "unavailable" if blocked_s is None else "call timed out",
                queued,
                message,
            )
            self._logged_error = message

    def succeeded(self, written: int, queued: int) -> None:
        if self._logged_error is not None:
            logger.info(
                "store database %s reachable again (%d events written in all, %d rows still queued)",
                self.safe_url,
                written,
                queued,
            )
            self._logged_error = None
            self._log.reset()
        self.connected = True
