"""The probes' HTTP client: keep-alive HTTP/1.1 GETs over asyncio streams, and nothing else.

Why not aiohttp here, when the rest of the project uses it: probing is the one place where the
client's own per-request CPU is the cost that matters. 100 deployments probed every 2 s are 150
GETs a second in the same event loop that serves LiteLLM's traffic, and aiohttp's general-purpose
machinery (cookie jar, URL objects, trace hooks, timeouts, redirects, compression, the connector's
bookkeeping) costs about 1.4 % of a core per GET a second per 50 deployments; this client costs
about 1.0 % (``bench/probe_cpu.py`` measures the whole probe loop). A probe needs little of
HTTP: a GET of a small page from a server it already knows, a bounded body, no redirects (one
that redirects is misconfigured, and following it could carry an API key elsewhere), no cookies,
no compression. That is all this implements, plus the egress a hosted API's probe shares with
the deployment's real requests (``providers.egress``): an ``http://`` forward proxy from the
environment (absolute-form requests for ``http://`` targets, a CONNECT tunnel for ``https://``)
and the deployment's TLS trust (``ssl_verify`` off, or a CA bundle).

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
- Connections are kept per origin *and* egress: one reached through a proxy, or trusting another
  CA, is never handed to a probe that asked for a different route. Nor one verified under a CA
  bundle since replaced on disk (a rotated CA): the route's idle connections are closed when its
  TLS context changes, and the next connection is verified under the new one.
- Errors are the subclasses of ``ProbeHttpError`` (here, in ``http1_response`` and in
  ``proxy_route``), which
  ``http.describe_error`` turns into secret-free reasons.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from litellm_failover.providers.egress import DIRECT, Egress, ssl_context
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.http1_response import (
    MAX_HEAD_BYTES,
    Disconnected,
    ProbeHttpError,
    read_body,
    read_head,
)
from litellm_failover.providers.proxy_route import (
    ProxyFailed,
    ProxyRoute,
    environment_proxies,
    open_tunnel,
    proxy_for,
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
    __slots__ = ("context", "idle_since", "reader", "reused", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext | None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.context = context  # the TLS trust it was verified under (None: plain HTTP)
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


_PoolKey = tuple[tuple[str, str, int], Egress]


class _Pool:
    """One route's idle connections, all verified under ``context``, its current TLS trust."""

    __slots__ = ("connections", "context")

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.connections: deque[_Connection] = deque()
        self.context = context

    def retrust(self, context: ssl.SSLContext | None) -> None:
        """The route's trust changed: connections verified under the old one go, now."""
        self.context = context
        while self.connections:
            self.connections.pop().close()


class ProbeClient:
    """Keep-alive GETs for probes. ``async with ProbeClient() as client`` or ``close()``.

    ``ssl_context`` is the trust of probes on the direct route (tests); ``proxies`` replaces the
    environment's proxy settings (``proxy_route.environment_proxies``), read once here.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, proxies: Mapping[str, str] | None = None
    ) -> None:
        self._idle: dict[_PoolKey, _Pool] = {}
        self._ssl = ssl_context
        self._proxies = environment_proxies() if proxies is None else dict(proxies)
        self._routes: dict[_PoolKey, ProxyRoute | None] = {}
        self._closed = False

    async def __aenter__(self) -> ProbeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            pool.retrust(None)
        self._idle.clear()

    async def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        max_body_bytes: int,
        egress: Egress = DIRECT,
    ) -> RawAnswer:
        """GET ``url``; a body over ``max_body_bytes`` is a ``MalformedAnswer``. Never redirects."""
        if self._closed:
            raise RuntimeError("ProbeClient is closed")
        target = _target(url)
        key = (target.origin, egress)
        route = self._route(key, target, egress)
        # A plain-HTTP target through a proxy is a forward-proxy request: absolute form.
        forward = route if route is not None and target.scheme == "http" else None
        request = self._request(target, headers, forward)
        # Looked up per request, not per connection: a CA bundle replaced since the route's idle
        # connections were made gives another context (a missing one, CaFileError), and those
        # connections must not carry on under the trust the operator just replaced.
        context = self._context(egress) if target.scheme == "https" else None
        connection = self._take_idle(key, context)
        if connection is not None:
            try:
                return await self._exchange(connection, key, request, max_body_bytes)
            except Disconnected as exc:
                if exc.started:
                    raise
                # Closed by the server while idle, between our check and our write: once more
                # on a fresh connection, as browsers and HTTP libraries do for idempotent GETs.
        connection = await self._connect(target, context, route)
        return await self._exchange(connection, key, request, max_body_bytes)

    # -- connections --------------------------------------------------------------------

    def _route(self, key: _PoolKey, target: _Target, egress: Egress) -> ProxyRoute | None:
        """The proxy for a target on a route, decided once (NO_PROXY matching is string work)."""
        if not egress.env_proxy:
            return None
        if key not in self._routes:
            if len(self._routes) > 4096:
                self._routes.clear()  # bounded: URLs come from configuration, but stay safe
            self._routes[key] = proxy_for(self._proxies, target.scheme, target.host, target.port)
        return self._routes[key]

    def _take_idle(self, key: _PoolKey, context: ssl.SSLContext | None) -> _Connection | None:
        pool = self._idle.get(key)
        if pool is None:
            return None
        if pool.context is not context:
            pool.retrust(context)
            return None
        now = time.monotonic()
        while pool.connections:
            connection = pool.connections.pop()  # most recent first: the least likely to have timed out
            if connection.usable(now):
                connection.reused = True
                return connection
            connection.close()
        return None

    def _keep(self, key: _PoolKey, connection: _Connection) -> None:
        pool = self._idle.get(key)
        if pool is None:
            pool = self._idle[key] = _Pool(connection.context)
        stale = pool.context is not connection.context  # made before the route's trust changed
        if self._closed or stale or len(pool.connections) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        pool.connections.append(connection)

    def _context(self, egress: Egress) -> ssl.SSLContext:
        if egress == DIRECT and self._ssl is not None:
            return self._ssl
        return ssl_context(egress.verify, egress.ca_file)

    async def _connect(
        self, target: _Target, context: ssl.SSLContext | None, route: ProxyRoute | None
    ) -> _Connection:
        if route is not None:
            return await self._connect_via(route, target, context)
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
        return _Connection(reader, writer, context)

    async def _connect_via(
        self, route: ProxyRoute, target: _Target, context: ssl.SSLContext | None
    ) -> _Connection:
        """A connection through the proxy: to the proxy itself for ``http://``, else a tunnel."""
        try:
            reader, writer = await asyncio.open_connection(route.host, route.port, limit=MAX_HEAD_BYTES)
        except socket.gaierror:
            raise ProxyFailed(route.shown, "DNS lookup failed") from None
        except OSError as exc:
            raise ProxyFailed(route.shown, f"cannot connect: {exc.strerror or type(exc).__name__}") from None
        connection = _Connection(reader, writer, context)
        if context is None:
            return connection
        try:
            shown = f"[{target.host}]" if ":" in target.host else target.host
            await open_tunnel(route, reader, writer, f"{shown}:{target.port}")
            await writer.start_tls(context, server_hostname=target.host)
        except ssl.SSLError as exc:
            connection.close()
            raise TlsFailed(target.host, exc) from None
        except BaseException:
            connection.close()  # a failed or cancelled handshake leaves nothing reusable
            raise
        return connection

    # -- one exchange ---------------------------------------------------------------------

    @staticmethod
    def _request(target: _Target, headers: dict[str, str] | None, forward: ProxyRoute | None = None) -> bytes:
        request_target = target.request_target
        if forward is not None:
            request_target = f"http://{target.host_header}{request_target}"
        lines = [
            f"GET {request_target} HTTP/1.1",
            f"Host: {target.host_header}",
            f"User-Agent: {USER_AGENT}",
            "Accept: */*",
        ]
        if forward is not None and forward.authorization:
            lines.append(f"Proxy-Authorization: {forward.authorization}")
        for name, value in (headers or {}).items():
            if any(c in name or c in value for c in "\r\n\0"):
                raise MalformedAnswer(f"header {name!r} contains a line break")  # never sent
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(
        self, connection: _Connection, key: _PoolKey, request: bytes, max_body_bytes: int
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
                self._keep(key, connection)
            else:
                connection.close()
