"""The PostgreSQL and Redis services some tests need, and what happens when they are absent.

Rule: a test that needs a service it cannot reach is skipped, with the address in the reason,
on a developer machine; with ``CI=true`` it fails instead, so CI can never go green by skipping.
The addresses can be moved with ``LITELLM_FAILOVER_TEST_POSTGRES_URL`` / ``..._REDIS_URL``.

Use the fixtures by loading this module as a plugin (``pytest_plugins = ["services"]`` in the
test module, or once in conftest.py), or call ``require_postgres()`` / ``require_redis()``.
``postgres_schema_url`` gives each test its own schema (created before, dropped CASCADE after),
targeted through the URL's ``options=-csearch_path%3D<schema>`` (see
``litellm_failover.store.engine``). ``TcpForwarder`` turns a service "off" and "on" again for
outage tests without touching the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from waiting import free_port

POSTGRES_URL_ENV = "LITELLM_FAILOVER_TEST_POSTGRES_URL"
REDIS_URL_ENV = "LITELLM_FAILOVER_TEST_REDIS_URL"
_DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def postgres_url() -> str:
    """SQLAlchemy async URL of the test PostgreSQL (trust auth, database ``test``)."""
    return os.environ.get(POSTGRES_URL_ENV, _DEFAULT_POSTGRES)


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV, _DEFAULT_REDIS)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@functools.cache
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: required services must be up)", pytrace=False)
    pytest.skip(message)


def require_postgres() -> str:
    """The PostgreSQL URL, or skip (fail under CI=true) naming the address it tried."""
    url = make_url(postgres_url())
    _require("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    return postgres_url()


def require_redis() -> str:
    url = make_url(redis_url())
    _require("Redis", url.host or "127.0.0.1", url.port or 6379)
    return redis_url()


def with_schema(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema``."""
    parsed = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


def with_port(url: str, port: int) -> str:
    return make_url(url).set(port=port).render_as_string(hide_password=False)


async def _execute(url: str, sql: str) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def postgres_base_url() -> str:
    return require_postgres()


@pytest.fixture
def redis_base_url() -> str:
    return require_redis()


@pytest.fixture
async def channel(redis_base_url: str) -> AsyncIterator[str]:
    """A fleet channel (and Redis key prefix) of this test's own: its fleet state and control
    keys are deleted afterwards."""
    from litellm_failover.control import redis_channel
    from litellm_failover.fleet.sync import clear_state

    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    await clear_state(redis_base_url, name)
    await redis_channel.clear_control(redis_base_url, name)


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped after the test."""
    base = require_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(base, f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_schema(base, schema)
    finally:
        asyncio.run(_execute(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


class TcpForwarder:
    """A TCP relay on 127.0.0.1 to a real service: ``stop()`` is an outage, ``start()`` a recovery.

    Stopping closes the listening socket and every relayed connection, which is what clients
    see when a database restarts; the port stays the same across restarts.
    """

    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.url = ""  # what clients should connect to, when the fixture knows it
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@pytest_asyncio.fixture
async def postgres_relay(postgres_schema_url: str) -> AsyncIterator[TcpForwarder]:
    """A stopped relay to the test PostgreSQL; ``relay.url`` is the per-test schema through it."""
    target = make_url(postgres_schema_url)
    relay = TcpForwarder(target.host or "127.0.0.1", target.port or 5432, free_port())
    relay.url = with_port(postgres_schema_url, relay.port)
    try:
        yield relay
    finally:
        await relay.stop()


class SilentServer:
    """A service that hangs: it accepts connections and reads what they send, and never answers
    (a Redis or database stuck mid-call). ``close`` drops every connection, which a client then
    sees as a reset rather than a timeout."""

    def __init__(self) -> None:
        self.connections: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        self.connected.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass  # accept everything, answer nothing

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for writer in self.connections:
            writer.close()
        await server.wait_closed()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
