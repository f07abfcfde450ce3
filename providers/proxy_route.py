"""Which forward proxy a probe goes through, and the CONNECT handshake that tunnels HTTPS.

The proxy comes from the environment, as for LiteLLM's own HTTP client: ``HTTPS_PROXY`` for
``https://`` targets, ``HTTP_PROXY`` for ``http://``, ``ALL_PROXY`` for either, and ``NO_PROXY``
(comma-separated host names, domain suffixes, ``host:port``, or ``*``) to go direct. Upper- and
lower-case names both count, lower case first (``urllib.request.getproxies_environment``).

Only ``http://`` proxies are spoken to (what egress proxies such as Squid offer); a SOCKS or
``https://`` proxy is reported as such, never silently bypassed. Proxy credentials in the URL
(``http://user:pass@proxy:3128``) are sent as ``Proxy-Authorization: Basic`` and never appear in
a reason: every reason names the proxy by host and port only.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

from litellm_failover.providers.http1_response import MAX_HEAD_BYTES, ProbeHttpError


class ProxyFailed(ProbeHttpError):
    """The proxy could not be reached, or refused to carry the probe."""

    def __init__(self, proxy: str, detail: str) -> None:
        super().__init__(f"proxy {proxy}: {detail}")
        self.proxy = proxy
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # the Proxy-Authorization value

    @property
    def shown(self) -> str:
        """How reasons name the proxy: host and port, never credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def environment_proxies() -> dict[str, str]:
    """``{"https": url, "http": url, "all": url, "no": "host,..."}`` from the environment."""
    return dict(getproxies_environment())


@functools.lru_cache(maxsize=256)
def _parse_proxy(url: str) -> ProxyRoute | str:
    """A route, or the reason this proxy URL cannot be used (never echoing credentials)."""
    text = url if "://" in url else f"http://{url}"  # curl's reading of "proxy:3128"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return "invalid proxy URL in the environment"
    if parts.scheme != "http":
        return f"{parts.scheme}:// proxies are not supported for probes (use an http:// proxy)"
    if not parts.hostname:
        return "invalid proxy URL in the environment: no host"
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return ProxyRoute(parts.hostname, port or 80, authorization)


def proxy_for(proxies: Mapping[str, str], scheme: str, host: str, port: int) -> ProxyRoute | None:
    """The proxy for one target, or ``None`` to go direct; ``ProxyFailed`` if it is unusable."""
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    if proxies.get("no") and (
        proxy_bypass_environment(host, proxies) or proxy_bypass_environment(f"{host}:{port}", proxies)
    ):
        return None
    route = _parse_proxy(url)
    if isinstance(route, str):
        raise ProxyFailed("from the environment", route)
    return route


def connect_request(route: ProxyRoute, host_port: str) -> bytes:
    lines = [f"CONNECT {host_port} HTTP/1.1", f"Host: {host_port}"]
    if route.authorization:
        lines.append(f"Proxy-Authorization: {route.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def open_tunnel(
    route: ProxyRoute, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host_port: str
) -> None:
    """Ask the proxy for a tunnel to ``host_port``; returns once it answered 2xx.

    The answer's head is all that is read: a 2xx to CONNECT has no body (RFC 9110 9.3.6), and
    every byte after it belongs to the tunnel (the TLS handshake that follows).
    """
    writer.write(connect_request(route, host_port))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise ProxyFailed(
            route.shown, f"closed the connection before answering CONNECT {host_port}"
        ) from None
    except asyncio.LimitOverrunError:
        raise ProxyFailed(route.shown, f"answer to CONNECT over {MAX_HEAD_BYTES} bytes") from None
    except OSError as exc:
        raise ProxyFailed(route.shown, f"{type(exc).__name__} during CONNECT {host_port}") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProxyFailed(route.shown, f"not an HTTP answer to CONNECT: {status_line[:60]!r}")
    if not code.startswith("2"):
        what = "proxy authentication required" if code == "407" else f"answered {code}"
        raise ProxyFailed(route.shown, f"refused CONNECT {host_port}: {what}")
