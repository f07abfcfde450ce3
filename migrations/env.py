"""Alembic environment for litellm-failover, configured in code rather than by an alembic.ini.

``litellm_failover.store.migrate`` runs Alembic on a connection it already holds (the async
engine's connection, via ``run_sync``) and passes it in ``config.attributes["connection"]``.
Given only a URL (``config.attributes["url"]`` or ``sqlalchemy.url``), this file opens its own
async engine the standard way. Offline mode (``--sql``) renders DDL for the named dialect.

The version table is ``failover_alembic_version``, not ``alembic_version``: the plugin's tables
may share a database with an application that keeps its own Alembic history.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection, make_url

from litellm_failover.store.engine import create_engine
from litellm_failover.store.models import VERSION_TABLE, Base


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        **kwargs,
    )


def _run_with_connection(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_with_connection)
    finally:
        await engine.dispose()


def run() -> None:
    config = context.config
    if context.is_offline_mode():
        dialect = config.attributes.get("dialect_name")
        if dialect is None:
            dialect = make_url(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))
            dialect = dialect.get_backend_name()
        _configure(dialect_name=dialect, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with_connection(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass config.attributes['connection'] or ['url']")
    asyncio.run(_run_with_url(url))


# Alembic executes this file with its context established; anything else importing the module
# (a tool walking the package, a docs build) must not start a migration.
if hasattr(context, "config"):
    run()
