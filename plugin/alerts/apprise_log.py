"""apprise's own log, kept free of the destinations' tokens.

apprise logs at DEBUG and INFO the URLs it sends to (``Sending Slack notification to
https://hooks.slack.com/services/T0/B0/XXXX``), and a proxy run at DEBUG would print every
webhook token. So its logger is held at WARNING at least (its debug lines are apprise's, not the
plugin's), and the records it still emits pass through a redactor that knows each configured
destination and the pieces of it (a token is often one path segment). apprise sends through
``requests``, whose urllib3 logs each request line (``"POST /hook/<token> HTTP/1.1" 500``) at
DEBUG: that logger keeps its level (it is every HTTP client's) but gets the same redactor.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from litellm_failover.redact import guard_loggers

APPRISE_LOGGER = "apprise"
_REQUEST_LOGGER = "urllib3.connectionpool"  # apprise's HTTP requests, logged by urllib3
_PIECES = re.compile(r"[/:@?&=#,]+")
_MIN_PIECE = 6  # shorter pieces are schemes, ports and words ("slack", "json", "443")


def guard_apprise_log(urls: Iterable[str]) -> None:
    """Hold apprise's logger at WARNING or above and mask ``urls`` (and their longer pieces) in
    what it and urllib3 still log. Called for each alerter built; the secrets of all of them are kept."""
    secrets = []
    for url in urls:
        secrets.append(url)
        secrets.extend(piece for piece in _PIECES.split(url) if len(piece) >= _MIN_PIECE)
    apprise_log = logging.getLogger(APPRISE_LOGGER)
    if apprise_log.getEffectiveLevel() < logging.WARNING:
        apprise_log.setLevel(logging.WARNING)
    guard_loggers((APPRISE_LOGGER, _REQUEST_LOGGER), secrets)
