"""Probes leave the host the way LiteLLM's own calls do (issue 10 §5): ``HTTPS_PROXY`` with
``NO_PROXY``, and TLS verified as LiteLLM's ``ssl_verify`` says.

A real ``CONNECT`` proxy (an asyncio server on 127.0.0.1 that tunnels bytes) in front of a real
TLS server with a self-signed certificate.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import litellm
import pytest
from aiohttp import web

from litellm_failover.providers import http
from litellm_failover.providers.probe_client import ProbeClient, ProxyFailed, TlsFailed

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(litellm, "ssl_verify", True)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@asynccontextmanager
async def tls_server(cert: Path, key: Path) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def fine(request: web.Request) -> web.Response:
        return web.Response(text="fine")

    app = web.Application()
    app.router.add_get("/health", fine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/health"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def connect_proxy(refuse: int | None = None) -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """A CONNECT proxy; each tunnel request is recorded (its target and headers)."""
    seen: list[dict[str, str]] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, authority, _ = head[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        seen.append({"method": method, "authority": authority, **headers})
        if refuse is not None:
            writer.write(f"HTTP/1.1 {refuse} No\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        host, port = authority.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def test_https_probes_go_through_https_proxy_with_its_credentials(self_signed, monkeypatch):
    cert, key = self_signed
    monkeypatch.setattr(litellm, "ssl_verify", str(cert))  # LiteLLM's CA bundle setting
    async with tls_server(cert, key) as url, connect_proxy() as (port, seen):
        monkeypatch.setenv("HTTPS_PROXY", f"http://probe%40ops:s3cret-pw@127.0.0.1:{port}")
        async with ProbeClient() as client:
            for _ in range(2):
                assert (await client.get(url, max_body_bytes=100)).body == b"fine"
        target = url.removeprefix("https://").removesuffix("/health")
        assert [(s["method"], s["authority"]) for s in seen] == [("CONNECT", target)]  # kept alive
        credentials = base64.b64decode(seen[0]["proxy-authorization"].removeprefix("Basic "))
        assert credentials == b"probe@ops:s3cret-pw"

        # NO_PROXY names the host: straight there, the proxy sees nothing more.
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        async with ProbeClient() as client:
            assert (await client.get(url, max_body_bytes=100)).body == b"fine"
        assert len(seen) == 1


async def test_a_refusing_proxy_is_a_reason_without_its_credentials(self_signed, monkeypatch):
    cert, key = self_signed
    async with tls_server(cert, key) as url, connect_proxy(refuse=407) as (port, _):
        monkeypatch.setenv("HTTPS_PROXY", f"http://probe:s3cret-pw@127.0.0.1:{port}")
        async with ProbeClient() as client:
            with pytest.raises(ProxyFailed) as err:
                await client.get(url, max_body_bytes=100)
    reason = http.describe_error(err.value)
    assert reason.startswith(f"proxy 127.0.0.1:{port} would not tunnel to 127.0.0.1:") and "407" in reason
    assert "s3cret" not in reason and "probe:" not in reason


async def test_tls_follows_litellm_ssl_verify(self_signed, monkeypatch):
    cert, key = self_signed
    async with tls_server(cert, key) as url:
        async with ProbeClient() as client:  # verified against the system store: unknown CA
            with pytest.raises(TlsFailed):
                await client.get(url, max_body_bytes=100)
        monkeypatch.setattr(litellm, "ssl_verify", str(cert))
        async with ProbeClient() as client:
            assert (await client.get(url, max_body_bytes=100)).body == b"fine"
        monkeypatch.setattr(litellm, "ssl_verify", False)  # LiteLLM told not to verify: neither do probes
        async with ProbeClient() as client:
            assert (await client.get(url, max_body_bytes=100)).body == b"fine"
