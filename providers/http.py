"""Bounded HTTP reads for probes, and reasons that are safe to store.

A probe reads endpoints it does not trust: a broken server can answer with a gigabyte, HTML
where JSON was due, or a body that never ends. Every read here stops at ``max_body_bytes``
(the timeout is the runner's job), and every reason it produces names the URL without
userinfo or query string, so a credential put in a URL never reaches ``status()``, logs or the
events table. API keys travel in headers only and never appear in a reason.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from litellm_failover.providers import http1_response, probe_client, proxy_route
from litellm_failover.providers.egress import DIRECT, CaFileError, Egress
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.probe_client import ProbeClient

_MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A whole answer: status, body and how long it took from request to last byte."""

    url: str
    status: int
    body: bytes
    latency_s: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ReadTracker:
    """Which reads of a probe round are still in flight.

    The runner's timeout cancels a whole round; this lets its reason say what it was waiting
    on ("metrics at http://node:8000/metrics") instead of only that time ran out. A read that is
    cancelled stays listed until the next round's ``clear()``, because by the time the runner
    sees the timeout every read has already unwound.
    """

    def __init__(self) -> None:
        self._pending: dict[int, str] = {}
        self._next = 0

    @contextmanager
    def reading(self, label: str) -> Iterator[None]:
        key = self._next
        self._next += 1
        self._pending[key] = label
        try:
            yield
        except asyncio.CancelledError:
            raise  # left in place: the runner's timeout reads what it cut off
        except BaseException:
            self._pending.pop(key, None)
            raise
        self._pending.pop(key, None)

    def clear(self) -> None:
        """Forget reads cut off in an earlier round; a prober calls this as a round starts."""
        self._pending.clear()

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._pending.values())


def safe_url(url: str) -> str:
    """The URL without userinfo, query or fragment: what a reason may show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def scrub(text: str) -> str:
    """Rewrite every URL inside free text (an exception message) to its ``safe_url`` form."""
    return _URL_RE.sub(lambda m: safe_url(m.group(0)), text)


def short(text: str, limit: int = _MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def get(
    client: ProbeClient,
    url: str,
    *,
    max_body_bytes: int,
    headers: dict[str, str] | None = None,
    egress: Egress = DIRECT,
) -> HttpAnswer:
    """GET ``url`` and read at most ``max_body_bytes``; the latency is request to last byte.

    Redirects are not followed: a health endpoint that redirects is misconfigured, and following
    one could carry an API key to another host. Transport errors propagate; ``describe_error``
    turns them into reasons.
    """
    start = time.monotonic()
    try:
        raw = await client.get(url, headers=headers, max_body_bytes=max_body_bytes, egress=egress)
    except MalformedAnswer as exc:
        raise MalformedAnswer(f"{safe_url(url)}: {exc}") from None
    return HttpAnswer(url=url, status=raw.status, body=raw.body, latency_s=time.monotonic() - start)


async def get_ok(
    client: ProbeClient,
    url: str,
    what: str,
    tracker: ReadTracker,
    *,
    max_body_bytes: int,
    headers: dict[str, str] | None = None,
    egress: Egress = DIRECT,
) -> HttpAnswer:
    """GET a telemetry page that must answer 200; the tracker names it if the probe times out,
    and any other status is a ``MalformedAnswer`` naming the (credential-free) URL."""
    with tracker.reading(read_label(what, url)):
        answer = await get(client, url, max_body_bytes=max_body_bytes, headers=headers, egress=egress)
    if answer.status != 200:
        raise MalformedAnswer(f"GET {safe_url(url)} answered {answer.status}")
    return answer


@functools.lru_cache(maxsize=4096)
def read_label(what: str, url: str) -> str:
    """What the tracker shows for a read: the same few every round, so built once."""
    return f"{what} at {safe_url(url)}"


def decode_json(answer: HttpAnswer, what: str) -> Any:
    """Parse a JSON body, or say in a few words why it is not JSON."""
    try:
        return json.loads(answer.body.decode("utf-8"))  # JSON on the wire is UTF-8 (RFC 8259)
    except UnicodeDecodeError:
        raise MalformedAnswer(f"{what} is not JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        if not answer.body.strip():
            raise MalformedAnswer(f"{what} is not JSON: empty body") from None
        raise MalformedAnswer(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def describe_error(exc: BaseException) -> str:
    """A short, secret-free reason for a transport error or an unexpected exception."""
    if isinstance(exc, MalformedAnswer):
        return short(scrub(str(exc)))
    if isinstance(exc, probe_client.DnsFailed):
        return f"DNS lookup failed for {exc.host}"
    if isinstance(exc, proxy_route.ProxyFailed):
        return short(str(exc))  # names the proxy by host and port only
    if isinstance(exc, probe_client.TlsFailed):
        return short(scrub(str(exc)))
    if isinstance(exc, CaFileError):
        return short(str(exc))  # names the file: a path, never a secret
    if isinstance(exc, probe_client.ConnectFailed):
        where = f"{exc.host}:{exc.port}"
        if exc.error.errno == errno.ECONNREFUSED or isinstance(exc.error, ConnectionRefusedError):
            return f"connection refused ({where})"
        detail = exc.error.strerror or type(exc.error).__name__
        return short(f"cannot connect to {where}: {detail}")
    if isinstance(exc, http1_response.Disconnected):
        return str(exc)
    if isinstance(exc, http1_response.BadResponse):
        return short(f"bad HTTP answer: {scrub(str(exc))}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        text = scrub(str(exc))
        return short(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    text = scrub(str(exc))
    return short(f"unexpected {type(exc).__name__}: {text}" if text else f"unexpected {type(exc).__name__}")


def origin(url: str | None) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL, to decide whether a credential may be sent there."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    return (parts.scheme, (parts.hostname or "").lower(), port)


def format_seconds(value: float) -> str:
    """``2.0 s``, ``0.25 s``: limits read the way they were configured."""
    if value == round(value, 1):
        return f"{value:.1f} s"
    return f"{value:.3g} s"
