"""Run the store's Alembic migrations from code: ``db upgrade``, the writer's start-up, tests.

Alembic is configured here rather than by an ``alembic.ini`` so that the migrations shipped in
the wheel (``litellm_failover.migrations``) are all a user needs. Alembic itself is synchronous;
it runs on the async engine's connection through ``run_sync``, inside one transaction, so a failed
upgrade leaves the schema as it was (PostgreSQL and, with the engine's BEGIN recipe, SQLite).

Several processes starting at once against one database (proxy replicas, or the workers of one
``litellm --num_workers N`` proxy) migrate one after another instead of racing on CREATE TABLE:
on PostgreSQL the transaction first takes an advisory lock; on SQLite, whose BEGIN takes no lock
until the first write (the second process would fail with "database is locked"), an exclusive
``flock`` on ``<file>.migrate.lock`` next to the database file is held around the transaction.
The first process migrates; the others wait, then find the schema at head and do nothing.

During a rolling upgrade a database can be ahead of an older replica (new pods migrated it).
``upgrade_engine(..., allow_newer=True)``, which the writer uses, leaves such a database alone,
since migrations only ever add; ``db upgrade`` says so as an error instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import litellm_failover.migrations as _migrations
from litellm_failover.store.engine import (
    StoreError,
    create_engine,
    ensure_sqlite_file,
    parse_url,
    require_sqlite_file,
    sqlite_path,
)
from litellm_failover.store.models import VERSION_TABLE

MIGRATIONS_DIR = Path(_migrations.__file__).resolve().parent
_ADVISORY_LOCK_KEY = 0x6C6C6D66  # "llmf": any constant shared by every litellm-failover process
FILE_LOCK_WAIT_S = 120.0  # a migration of this store takes well under a second; a stuck peer fails
_FILE_LOCK_POLL_S = 0.05

logger = logging.getLogger("litellm_failover.store")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations, for code and for ``alembic`` users."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    """The newest revision this version of the package knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _locked(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold ``<database file>.migrate.lock`` exclusively (POSIX ``flock``; released by the kernel
    if the process dies). Polled, not blocking, so the event loop keeps running while it waits."""
    path = sqlite_path(engine.url)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None or not path.parent.is_dir():
        yield
        return
    lock_path = path.with_name(path.name + ".migrate.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FILE_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if loop.time() >= deadline:
                    raise StoreError(
                        f"another process has held the migration lock {lock_path} for "
                        f"{FILE_LOCK_WAIT_S:.0f}s; is a migration stuck?"
                    ) from None
                await asyncio.sleep(_FILE_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


async def _run(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    def run_sync(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)

    async with _sqlite_file_lock(engine), engine.begin() as connection:
        await _locked(connection)
        await connection.run_sync(run_sync)


def _newer_than_known(config: Config) -> str | None:
    """The database's revision when this package does not know it (a newer release wrote it)."""
    connection = config.attributes["connection"]
    current = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()
    if current is None:
        return None
    try:
        ScriptDirectory.from_config(config).get_revision(current)
    except CommandError:
        return current
    return None


def _upgrade(config: Config, revision: str, allow_newer: bool) -> None:
    newer = _newer_than_known(config)
    if newer is not None:
        message = (
            f"database schema is at revision {newer}, newer than this litellm-failover knows "
            f"(newest known: {head_revision()})"
        )
        if not allow_newer:
            raise StoreError(message + ": upgrade the litellm-failover package")
        logger.warning("%s; leaving it as it is", message)
        return
    command.upgrade(config, revision)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head", *, allow_newer: bool = False) -> None:
    """Upgrade through an engine the caller owns (the writer keeps its engine afterwards).

    ``allow_newer``: a database already past every revision this package knows is left as it is
    (with a warning) instead of failing; the writer sets it so a rolling upgrade keeps writing.
    """
    await _run(engine, lambda config: _upgrade(config, revision, allow_newer))


async def upgrade_database(url: str | URL, revision: str = "head") -> None:
    """``alembic upgrade head`` against any supported async URL.

    ``sqlite+aiosqlite:///path`` (the file and its directory are created, the file owner-only)
    or ``postgresql+asyncpg://user:pw@host/db``; a schema goes on the URL as
    ``?options=-csearch_path%3Dmyschema`` (see ``litellm_failover.store.engine``).
    """
    parsed = parse_url(url)
    ensure_sqlite_file(parsed)
    engine = create_engine(parsed)
    try:
        await upgrade_engine(engine, revision, allow_newer=False)
    finally:
        await engine.dispose()


async def downgrade_database(url: str | URL, revision: str = "base") -> None:
    """Downgrade to ``revision``; ``base`` drops every table the migrations created."""
    parsed = parse_url(url)
    require_sqlite_file(parsed)
    engine = create_engine(parsed, create_directory=False)
    try:
        await _run(engine, lambda config: command.downgrade(config, revision))
    finally:
        await engine.dispose()


async def current_revision(url: str | URL) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    parsed = parse_url(url)
    require_sqlite_file(parsed)
    engine = create_engine(parsed, create_directory=False)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(
                    sync, opts={"version_table": VERSION_TABLE}
                ).get_current_revision()
            )
    finally:
        await engine.dispose()


def upgrade_sql(url: str | URL, revision: str = "head") -> str:
    """The DDL ``upgrade`` would run, for a DBA to review or apply by hand (no connection made)."""
    parsed = parse_url(url)
    buffer = io.StringIO()
    config = Config(output_buffer=buffer)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["dialect_name"] = parsed.get_backend_name()
    command.upgrade(config, revision, sql=True)
    return buffer.getvalue()
