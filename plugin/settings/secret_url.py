"""``SecretUrl``: a URL that may carry credentials (``redis://:pw@host``, a database URL).

It stays a ``str``, so the code that connects with it is unchanged, but its ``repr`` hides the
user name and password: a settings object printed in a log line, a traceback or a debugger
shows where it points, never how it logs in. The fields holding one are also kept out of the
model's ``repr`` and out of configuration errors (``settings.base``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from litellm_failover.redact import mask_url


class SecretUrl(str):
    """A ``str`` whose ``repr`` masks the URL's credentials."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretUrl({mask_url(self)!r})"


SecretUrlField = Annotated[str, AfterValidator(SecretUrl)]
