"""Migrations: upgrade and downgrade round trips on real SQLite and real PostgreSQL."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from litellm_failover.events import FailoverEvent
from litellm_failover.settings import WriterSettings
from litellm_failover.store.engine import StoreError, create_engine
from litellm_failover.store.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
    upgrade_sql,
)
from litellm_failover.store.models import VERSION_TABLE, Base
from litellm_failover.store.queries import list_events
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services"]

TABLES = {"failover_events", "failover_deployment_state", "failover_sessions", "failover_messages"}
TABLES |= {"failover_commands", "failover_command_results", "failover_control_replicas"}  # 0003


async def _tables(url: str) -> set[str]:
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _indexes(url: str) -> set[str]:
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(lambda sync: inspect(sync).get_indexes("failover_events"))
    finally:
        await engine.dispose()
    return {index["name"] for index in found}


async def _schemas_holding(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text("SELECT table_schema FROM information_schema.tables WHERE table_name = :t"), {"t": table}
            )
            return {row[0] for row in result}
    finally:
        await engine.dispose()


async def test_sqlite_round_trip_creates_the_directory(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nested/dir/store.db"
    await upgrade_database(url)
    assert (tmp_path / "nested" / "dir" / "store.db").is_file()
    assert await current_revision(url) == head_revision() == "0005_caller_sessions"
    assert await _tables(url) == TABLES | {VERSION_TABLE}
    assert await _indexes(url) == {
        "ix_failover_events_created_at",
        "ix_failover_events_event_type",
        "ix_failover_events_model_group",
    }

    await upgrade_database(url)  # idempotent: already at head
    await downgrade_database(url)
    assert await current_revision(url) is None
    assert await _tables(url) == {VERSION_TABLE}

    await upgrade_database(url)
    assert await _tables(url) == TABLES | {VERSION_TABLE}


async def test_models_match_the_migrated_schema(tmp_path: Path) -> None:
    """A model changed without a migration (or the reverse) fails here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []


async def test_a_failed_upgrade_leaves_no_half_made_schema(tmp_path: Path) -> None:
    """SQLite DDL runs inside the migration's transaction, so a retry starts from clean."""
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    engine = create_engine(url)
    async with engine.begin() as connection:  # a clash the migration will hit after its first table
        await connection.execute(text("CREATE TABLE failover_deployment_state (x INTEGER)"))
    await engine.dispose()
    with pytest.raises(Exception, match="already exists"):
        await upgrade_database(url)
    assert await _tables(url) == {"failover_deployment_state"}
    assert await current_revision(url) is None


@pytest.mark.postgres
async def test_postgres_round_trip_in_its_own_schema(
    postgres_schema_url: str, postgres_base_url: str
) -> None:
    url = postgres_schema_url
    await upgrade_database(url)
    assert await current_revision(url) == head_revision()
    assert await _tables(url) == TABLES | {VERSION_TABLE}
    schema = make_url(url).query["options"].removeprefix("-csearch_path=")
    assert await _schemas_holding(postgres_base_url, "failover_events") >= {schema}

    await downgrade_database(url, "base")
    assert await current_revision(url) is None
    assert await _tables(url) == {VERSION_TABLE}
    await upgrade_database(url)
    assert await _tables(url) == TABLES | {VERSION_TABLE}


def test_offline_sql_names_both_tables_without_connecting() -> None:
    sql = upgrade_sql("postgresql://nobody:pw@203.0.113.1:1/none")
    assert "CREATE TABLE failover_events" in sql
    assert "CREATE TABLE failover_deployment_state" in sql
    assert "JSONB" in sql
    assert "pw" not in sql.replace("pwd", "")


def test_env_module_does_nothing_when_imported_outside_alembic() -> None:
    module = importlib.import_module("litellm_failover.migrations.env")
    assert callable(module.run)


async def test_a_database_ahead_of_this_package(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rolling upgrade: newer replicas migrated the database; an older one must keep writing."""
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    await upgrade_database(url)
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    await engine.dispose()

    with pytest.raises(StoreError, match="revision 0099, newer than"):
        await upgrade_database(url)

    async with StoreWriter(url, WriterSettings(flush_interval_s=0.01)) as writer:
        writer.submit_event(FailoverEvent("failover", "chat", reason="still written"))
        assert await writer.flush(timeout=5)
    assert [row["reason"] for row in await list_events(url)] == ["still written"]
    assert any("newer than" in record.getMessage() for record in caplog.records)
    assert await current_revision(url) == "0099"
