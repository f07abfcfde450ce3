"""Real parts for the egress tests: a private CA, a TLS endpoint, and an HTTP forward/CONNECT proxy.

- ``make_ca``: a self-signed CA and a server certificate it signed (``cryptography``, installed
  with LiteLLM), for 127.0.0.1 and a made-up host name.
- ``EgressProxy``: an asyncio HTTP proxy on 127.0.0.1 that tunnels ``CONNECT`` and forwards
  absolute-form ``GET``s, with its own small host table, so a name that no DNS knows
  (``api.hosted.test``) resolves only through it: a probe that reaches it went through the proxy.
  It can demand ``Proxy-Authorization`` and records what it was asked.
- ``endpoint``: a hosted-API stand-in on 127.0.0.1, over TLS when given a ``Pki``; ``rotate``
  moves it to another CA's certificate for the connections it accepts from then on.
- ``MountedSecret``: a CA bundle laid out as Kubernetes mounts a secret, updated as the kubelet
  updates it (a new folder, then an atomic swap of the ``..data`` symlink).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTED_NAME = "api.hosted.test"  # resolvable only through EgressProxy's table


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_ca(folder: Path, names: tuple[str, ...] = (HOSTED_NAME,)) -> Pki:
    """A CA and a server certificate for 127.0.0.1 and ``names``, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "litellm-failover test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *(x509.DNSName(n) for n in names)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "127.0.0.1")])
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


@dataclass
class EgressProxy:
    """A forward proxy on 127.0.0.1; ``hosts`` maps names to the real port on 127.0.0.1."""

    hosts: dict[str, int] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None
    requests: list[str] = field(default_factory=list)  # "CONNECT host:port", "GET http://..."
    url: str = ""
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def resolve(self, host: str, port: int) -> tuple[str, int]:
        if host in self.hosts:
            return "127.0.0.1", self.hosts[host]
        return host, port

    def _authorized(self, head: list[str]) -> bool:
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return any(
            line.lower().startswith("proxy-authorization:") and line.split(":", 1)[1].strip() == expected
            for line in head[1:]
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            head = raw.decode("latin-1").split("\r\n")[:-2]
            method, target, _ = head[0].split(" ", 2)
            self.requests.append(f"{method} {target}")
            if not self._authorized(head):
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            if method == "CONNECT":
                name, _, port = target.rpartition(":")
                up_reader, upstream = await asyncio.open_connection(*self.resolve(name, int(port)))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                parts = urlsplit(target)  # absolute form: http://host:port/path
                up_reader, upstream = await asyncio.open_connection(
                    *self.resolve(parts.hostname or "", parts.port or 80)
                )
                origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                kept = [line for line in head[1:] if not line.lower().startswith("proxy-authorization:")]
                upstream.write(
                    ("\r\n".join([f"{method} {origin_form} HTTP/1.1", *kept]) + "\r\n\r\n").encode()
                )
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass  # the client or upstream went away: so does this connection
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EgressProxy]:
        def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        server = await asyncio.start_server(spawn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


@dataclass
class Endpoint:
    """A hosted-API stand-in: ``/v1/models`` and ``/health``, over TLS when given a certificate."""

    port: int = 0
    paths: list[str] = field(default_factory=list)
    connections: list[asyncio.BaseTransport] = field(default_factory=list)  # each request's
    tls: ssl.SSLContext | None = None

    def url(self, host: str = "127.0.0.1", *, tls: bool) -> str:
        return f"{'https' if tls else 'http'}://{host}:{self.port}"

    def rotate(self, pki: Pki) -> None:
        """Present ``pki``'s certificate from the next handshake on (open connections keep theirs)."""
        assert self.tls is not None, "rotate() needs an endpoint started with a Pki"
        self.tls.load_cert_chain(pki.cert_file, pki.key_file)


def server_context(pki: Pki) -> ssl.SSLContext:
    """The TLS context of a test server presenting ``pki``'s certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    return context


@asynccontextmanager
async def endpoint(pki: Pki | None = None) -> AsyncIterator[Endpoint]:
    from aiohttp import web

    served = Endpoint()

    async def models(request: web.Request) -> web.Response:
        served.paths.append(request.path)
        assert request.transport is not None
        served.connections.append(request.transport)
        return web.json_response({"object": "list", "data": [{"id": "gpt-test", "object": "model"}]})

    async def health(request: web.Request) -> web.Response:
        served.paths.append(request.path)
        return web.Response(text="ok")

    context = served.tls = server_context(pki) if pki is not None else None
    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    served.port = runner.addresses[0][1]
    try:
        yield served
    finally:
        await runner.cleanup()


class MountedSecret:
    """``folder/ca.crt`` as the kubelet mounts a secret's key: ``ca.crt -> ..data/ca.crt`` and
    ``..data -> ..<version>``. ``update`` writes the new version's folder, swaps ``..data`` to it
    with one rename (what readers see changes atomically) and removes the old folder."""

    def __init__(self, folder: Path, pem: bytes) -> None:
        self.folder = folder
        self.version = 0
        self._write_version(pem)
        os.symlink(f"..{self.version}", folder / "..data")
        self.path = folder / "ca.crt"
        os.symlink("..data/ca.crt", self.path)

    def _write_version(self, pem: bytes) -> Path:
        self.version += 1
        version = self.folder / f"..{self.version}"
        version.mkdir()
        (version / "ca.crt").write_bytes(pem)
        return version

    def update(self, pem: bytes) -> None:
        old = (self.folder / "..data").resolve()
        self._write_version(pem)
        os.symlink(f"..{self.version}", self.folder / "..data_tmp")
        os.replace(self.folder / "..data_tmp", self.folder / "..data")
        shutil.rmtree(old)
