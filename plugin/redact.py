"""Keep secrets out of events, logs and status.

Error texts from providers can echo request details; before one is stored or logged, known
secrets (the deployments' API keys) and anything shaped like a bearer token or a URL password are
masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_TOKEN_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,}|(?<=://)[^/\s:@]+:[^/\s@]+(?=@))"
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

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
