"""apprise's own log, kept free of the destinations' tokens.

apprise logs at DEBUG and INFO the URLs it sends to (``Sending Slack notification to
https://hooks.slack.com/services/T0/B0/XXXX``), and a proxy run at DEBUG would print every
webhook token. So its logger is held at WARNING at least (its debug lines are apprise's, not the
plugin's), and the records it still emits pass through a redactor that knows each configured
destination and the pieces of it (a token is often one path segment).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from litellm_failover.redact import Redactor

APPRISE_LOGGER = "apprise"
_PIECES = re.compile(r"[/:@?&=#,]+")
_MIN_PIECE = 6  # shorter pieces are schemes, ports and words ("slack", "json", "443")


class _RedactingFilter(logging.Filter):
    """Masks the known secrets in every record of apprise's logger, arguments included."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._redact = Redactor()

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets.update(secrets)
        self._redact = Redactor(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage(), limit=2000)
        record.args = None
        return True


_FILTER = _RedactingFilter()


def guard_apprise_log(urls: Iterable[str]) -> None:
    """Hold apprise's logger at WARNING or above and mask ``urls`` (and their longer pieces) in
    what it still logs. Called for each alerter built; the secrets of all of them are kept."""
    secrets = []
    for url in urls:
        secrets.append(url)
        secrets.extend(piece for piece in _PIECES.split(url) if len(piece) >= _MIN_PIECE)
    _FILTER.add(secrets)
    log = logging.getLogger(APPRISE_LOGGER)
    if log.getEffectiveLevel() < logging.WARNING:
        log.setLevel(logging.WARNING)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
