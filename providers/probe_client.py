"""The probes' HTTP client: keep-alive HTTP/1.1 GETs over asyncio streams, and nothing else.

Why not aiohttp here, when the rest of the project uses it: probing is the one place where the
client's own per-request CPU is the cost that matters. 100 deployments probed every 2 s are 150
GETs a second in the same event loop that serves LiteLLM's traffic, and aiohttp's general-purpose
machinery (cookie jar, URL objects, trace hooks, timeouts, redirects, compression, the connector's
bookkeeping) costs about 1.4 % of a core per GET a second per 50 deployments; this client costs
about 1.0 % (``bench/probe_cpu.py`` measures the whole probe loop). A probe needs little of
HTTP: a GET of a small page from a server it already knows, a bounded body, no redirects (one
that redirects is misconfigured, and following it could carry an API key elsewhere), no cookies,
no compression, no proxies. That is all this implements.

- One request at a time per connection; idle connections are kept per origin and reused. A
  connection the server has closed while idle is noticed before reuse, and a reused connection
  that fails before any byte of the answer arrived is retried once on a fresh one (the server
  closed it between our check and our write: uvicorn drops idle connections after 5 s).
- Bodies: ``Content-Length``, ``chunked`` or read-until-close, each bounded by ``max_body_bytes``.
- Any error or cancellation (the runner's timeout) closes the connection: a half-read answer must
  never be mistaken for the next one.
- Nor may bytes the server sent beyond the answer's declared end: a connection with unread bytes
  (in the reader's buffer, or still in the socket) is never reused, or a server sending a second
  answer after ``Content-Length: 2`` would have the next probe read a stale 200 instead of a 503.
  Framing is read strictly (``http1_response``): anything in doubt is an error, and an error
  closes the connection.
- Errors are the subclasses of ``ProbeHttpError`` (here and in ``http1_response``), which
  ``http.describe_error`` turns into secret-free reasons.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.http1_response import (
    MAX_HEAD_BYTES,
    Disconnected,
    ProbeHttpError,
    read_body,
    read_head,
)

USER_AGENT = "litellm-failover-probe"
IDLE_KEEP_S = 30.0
"""Idle connections older than this are closed rather than reused."""
MAX_IDLE_PER_ORIGIN = 4


class ConnectFailed(ProbeHttpError):
    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {error}")
        self.host = host
        self.port = port
        self.error = error


class DnsFailed(ProbeHttpError):
    def __init__(self, host: str) -> None:
        super().__init__(f"DNS lookup failed for {host}")
        self.host = host


class TlsFailed(ProbeHttpError):
    def __init__(self, host: str, error: ssl.SSLError) -> None:
        super().__init__(f"TLS error talking to {host}: {error}")
        self.host = host


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    request_target: str
    host_header: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    """Parsed once per URL: probes read the same few URLs every round."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MalformedAnswer(f"invalid URL {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedAnswer(f"invalid URL {url!r}: needs http(s)://host")
    default = 443 if parts.scheme == "https" else 80
    port = port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, host, port, target, host_header)


class _Connection:
    __slots__ = ("idle_since", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.transport.is_closing()
            and now - self.idle_since < IDLE_KEEP_S
            and not self.has_buffered_bytes()
            and not self._socket_has_bytes()
        )

    def has_buffered_bytes(self) -> bool:
        """Bytes read from the socket but not by us: whatever they are, they answer no request."""
        # StreamReader has no public "bytes buffered" API; ``_buffer`` is the bytearray it reads
        # from (stable since 3.4). tests/test_probe_client.py fails if that ever changes.
        return bool(self.reader._buffer)

    def _socket_has_bytes(self) -> bool:
        """A non-blocking peek at the socket: bytes the event loop has not read yet, or EOF.

        The peek is on a duplicate of the descriptor (asyncio's socket wrapper has no ``recv``);
        the duplicate shares the kernel socket, so it sees the same queue and closing it closes
        only the duplicate. With TLS it sees records, not plaintext: a record arriving while idle
        (an alert, a late session ticket) also retires the connection, which costs a handshake
        and never a stale answer.
        """
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            with socket.fromfd(sock.fileno(), sock.family, sock.type) as peek:
                peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return True  # a byte nobody asked for, or b"": the server closed it
        except BlockingIOError:
            return False  # nothing queued: the one outcome that lets the connection be reused
        except OSError:
            return True

    def close(self) -> None:
        self.writer.transport.abort()  # no FIN handshake to wait for: we are done with it


@dataclass(frozen=True, slots=True)
class RawAnswer:
    status: int
    body: bytes


class ProbeClient:
    """Keep-alive GETs for probes. ``async with ProbeClient() as client`` or ``close()``."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._ssl = ssl_context
        self._closed = False

    async def __aenter__(self) -> ProbeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for connection in pool:
                connection.close()
        self._idle.clear()

    async def get(self, url: str, *, headers: dict[str, str] | None = None, max_body_bytes: int) -> RawAnswer:
        """GET ``url``; a body over ``max_body_bytes`` is a ``MalformedAnswer``. Never redirects."""
        if self._closed:
            raise RuntimeError("ProbeClient is closed")
        target = _target(url)
        request = self._request(target, headers)
        connection = self._take_idle(target.origin)
        if connection is not None:
            try:
                return await self._exchange(connection, target, request, max_body_bytes)
            except Disconnected as exc:
                if exc.started:
                    raise
                # Closed by the server while idle, between our check and our write: once more
                # on a fresh connection, as browsers and HTTP libraries do for idempotent GETs.
        connection = await self._connect(target)
        return await self._exchange(connection, target, request, max_body_bytes)

    # -- connections --------------------------------------------------------------------

    def _take_idle(self, origin: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(origin)
        now = time.monotonic()
        while pool:
            connection = pool.pop()  # most recent first: the least likely to have timed out
            if connection.usable(now):
                connection.reused = True
                return connection
            connection.close()
        return None

    def _keep(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        pool = self._idle.setdefault(origin, deque())
        if self._closed or len(pool) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        pool.append(connection)

    async def _connect(self, target: _Target) -> _Connection:
        context: ssl.SSLContext | None = None
        if target.scheme == "https":
            context = self._ssl or _default_ssl_context()
        try:
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context else None,
                limit=MAX_HEAD_BYTES,
            )
        except socket.gaierror:
            raise DnsFailed(target.host) from None
        except ssl.SSLError as exc:
            raise TlsFailed(target.host, exc) from None
        except OSError as exc:
            raise ConnectFailed(target.host, target.port, exc) from None
        return _Connection(reader, writer)

    # -- one exchange ---------------------------------------------------------------------

    @staticmethod
    def _request(target: _Target, headers: dict[str, str] | None) -> bytes:
        lines = [
            f"GET {target.request_target} HTTP/1.1",
            f"Host: {target.host_header}",
            f"User-Agent: {USER_AGENT}",
            "Accept: */*",
        ]
        for name, value in (headers or {}).items():
            if any(c in name or c in value for c in "\r\n\0"):
                raise MalformedAnswer(f"header {name!r} contains a line break")  # never sent
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(
        self, connection: _Connection, target: _Target, request: bytes, max_body_bytes: int
    ) -> RawAnswer:
        keep = False
        try:
            connection.writer.write(request)
            status, keep_alive, framing = await read_head(connection.reader)
            body = await read_body(connection.reader, framing, max_body_bytes)
            # Bytes already buffered past the answer's end belong to no request of ours.
            keep = keep_alive and framing[0] != "close" and not connection.has_buffered_bytes()
            return RawAnswer(status, body)
        finally:
            # On success a kept connection goes back; on anything else (an error, the
            # runner's timeout cancelling us mid-read) it is closed, never reused half-read.
            if keep:
                self._keep(target.origin, connection)
            else:
                connection.close()


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """Loading the system CA store takes milliseconds: once per process, not per connection."""
    return ssl.create_default_context()
