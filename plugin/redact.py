"""Keep secrets out of events, logs and status.

Error texts from providers can echo request details; before one is stored or logged, known
secrets (the deployments' API keys) and anything shaped like a bearer token or a URL password are
masked. Other libraries' loggers print such texts too (LiteLLM's Router logs each failed call
with the provider's message, which may quote the key; urllib3 logs each request line, with a
webhook's token in its path): ``guard_loggers`` routes their records through the same masking.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

_TOKEN_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,}|(?<=://)[^/\s:@]+:[^/\s@]+(?=@))"
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too (a deployment added at run time brings its own key)."""
        self._secrets = sorted(
            {*self._secrets, *(s for s in secrets if s and len(s) >= 4)}, key=len, reverse=True
        )

    def __call__(self, text: str, limit: int = 300) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _TOKEN_SHAPES.sub("***", text)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def mask_url(url: str) -> str:
    """The URL with its user name and password (everything before ``@`` in the authority)
    replaced by ``***``: where it points, never how it logs in."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"***@{host}").geturl()


_NO_LIMIT = sys.maxsize  # another library's record is masked, never cut


class RedactingFilter(logging.Filter):
    """Masks known secrets (and token shapes) in every record of the loggers it is added to.

    One filter for the process: the secrets of every plugin and alerter built are added to it
    (never removed: a secret once configured stays one)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._redact = Redactor()

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets.update(secrets)
        self._redact = Redactor(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: left for the handler to report
            return True
        record.msg = self._redact(message, limit=_NO_LIMIT)
        record.args = None
        if record.exc_info and not record.exc_text:  # the traceback's text: the formatter reuses it
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text, limit=_NO_LIMIT)
        return True


_FILTER = RedactingFilter()
# LiteLLM's loggers (``litellm._logging``): each failed call is logged with the provider's text.
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


def guard_loggers(names: Iterable[str], secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in what the loggers ``names`` log (their levels are left as they are).

    A filter is added to each named logger, not a handler: it sees the records logged on that
    logger itself, which is where these libraries log."""
    _FILTER.add(secrets)
    for name in names:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)
