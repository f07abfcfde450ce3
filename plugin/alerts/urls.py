"""Checking and naming alert destinations without ever showing their secrets.

An apprise URL carries its credentials in the URL itself (``slack://TokenA/TokenB/TokenC``:
even the "host" is a token), and a webhook URL often does too (Slack-style
``https://hooks.example.com/services/T0/B0/secret``). So a destination is only ever named by its
key path and a safe description: the scheme (and the service name) for apprise, the scheme and
host for a webhook. This module imports no settings, so ``settings`` can use it in validators.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]{0,31})://")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an RFC 9110 token


def scheme_of(url: str) -> str:
    """``slack://`` for ``slack://T0/B0/secret``; ``<no scheme>`` when there is none to show."""
    match = _SCHEME.match(url.strip())
    return f"{match.group(1).lower()}://" if match else "<no scheme>"


def describe_webhook(url: str) -> str:
    """Scheme, host and port only: the path and query may hold a token, userinfo a password."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return scheme_of(url)
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port else "")


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` is no usable webhook URL (in words safe to show), or None if it is one."""
    scheme = scheme_of(url)
    if scheme not in ("http://", "https://"):
        return f"a webhook URL must be http:// or https:// (got a URL with scheme {scheme})"
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        return f"not a valid {scheme} URL (bad host or port)"
    if not host:
        return f"a webhook URL needs a host (got a {scheme} URL without one)"
    return None


@contextlib.contextmanager
def quiet_apprise() -> Iterator[None]:
    """Hold back apprise's own log lines while it parses a URL: on a URL it cannot parse it logs
    the URL as given ("Unparseable URL slak://TOKEN/..."), which would put a secret in the log."""
    apprise_logger = logging.getLogger("apprise")
    drop_all = _DropAll()
    apprise_logger.addFilter(drop_all)
    try:
        yield
    finally:
        apprise_logger.removeFilter(drop_all)


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def load_apprise_service(url: str) -> Any | None:
    """The apprise service object for ``url``, or None if apprise cannot parse or load it."""
    import apprise  # imported here: only configurations with apprise URLs pay for it

    with quiet_apprise():
        try:
            return apprise.Apprise.instantiate(url.strip(), suppress_exceptions=True)
        except Exception:  # apprise is documented to return None, but be safe at start-up
            return None


def apprise_url_problem(url: str) -> str | None:
    """Why apprise cannot use ``url`` (naming its scheme only), or None if it can."""
    if load_apprise_service(url) is None:
        return (
            f"apprise cannot parse or load this URL (scheme {scheme_of(url)}; "
            "see https://github.com/caronc/apprise/wiki for the URL formats)"
        )
    return None


def header_problem(name: str, value: str) -> str | None:
    """Why a webhook header cannot be sent (never quoting the value), or None if it can."""
    if not _HEADER_NAME.match(name):
        return "a header name must be a token (letters, digits and !#$%&'*+-.^_`|~)"
    if any(ch in value for ch in "\r\n\0"):
        return "the header value contains a line break or NUL"
    return None
