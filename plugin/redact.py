"""Keep secrets out of events, logs and status.

Error texts from providers can echo request details; before one is stored or logged, known
secrets (the deployments' API keys) and anything shaped like a bearer token or a URL password are
masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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
