"""Migrations 0001 <-> 0002 and the models against them, on real SQLite and real PostgreSQL.

The drift test is what keeps ``models.py`` and ``migrations/versions`` honest: Alembic's own
autogenerate comparison, run against a database migrated from scratch, must find nothing to do.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from litellm_failover.store.engine import create_engine
from litellm_failover.store.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from litellm_failover.store.models import VERSION_TABLE, Base

pytest_plugins = ["services", "store_fixtures"]  # store_url: SQLite and PostgreSQL

BASE_TABLES = {"failover_events", "failover_deployment_state", VERSION_TABLE}
SESSION_TABLES = {"failover_sessions", "failover_messages"}


async def _inspect(url: str, look: Any) -> Any:
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: look(inspect(sync)))
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    return set(await _inspect(url, lambda inspector: inspector.get_table_names()))


async def _sql(url: str, sql: str) -> Any:
    """Run one statement in its own transaction; a query's first value."""
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


async def test_upgrade_and_downgrade_between_0001_and_0002(store_url: str) -> None:
    url = store_url
    assert head_revision() >= "0002"  # 0003 (operator commands) is tested in test_control_db.py
    await upgrade_database(url, "0001")
    assert await current_revision(url) == "0001"
    assert await _tables(url) == BASE_TABLES
    await _sql(
        url,
        "INSERT INTO failover_events (id, created_at, event_type, model_group, reason, instance_id, details)"
        " VALUES ('e1', '2025-06-01 12:00:00', 'failover', 'chat', 'kept', 'a', '{}')",
    )

    await upgrade_database(url, "0002")
    assert await current_revision(url) == "0002"
    assert await _tables(url) == BASE_TABLES | SESSION_TABLES
    columns = await _inspect(url, lambda i: [c["name"] for c in i.get_columns("failover_messages")])
    assert columns == [
        "id",
        "session_id",
        "seq",
        "role",
        "content",
        "content_hash",
        "content_chars",
        "deployment_id",
        "response_id",
        "prompt_tokens",
        "completion_tokens",
        "truncated",
        "created_at",
    ]
    indexes = await _inspect(
        url, lambda i: {ix["name"]: ix["column_names"] for ix in i.get_indexes("failover_messages")}
    )
    assert indexes["ix_failover_messages_response_id"] == ["response_id"]
    uniques = await _inspect(url, lambda i: i.get_unique_constraints("failover_messages"))
    assert [(u["name"], u["column_names"]) for u in uniques] == [
        ("uq_failover_messages_session_id_seq", ["session_id", "seq"])
    ]
    primary = await _inspect(url, lambda i: i.get_pk_constraint("failover_sessions")["constrained_columns"])
    assert primary == ["session_id", "model_group"]
    await _sql(
        url,
        "INSERT INTO failover_messages"
        " (session_id, seq, role, content_hash, content_chars, truncated, created_at)"
        " VALUES ('s', 0, 'user', 'h', 0, false, '2025-06-01 12:00:00')",
    )
    assert await _sql(url, "SELECT id FROM failover_messages") == 1  # numbered by the database

    await downgrade_database(url, "0001")
    assert await current_revision(url) == "0001"
    assert await _tables(url) == BASE_TABLES
    assert await _sql(url, "SELECT reason FROM failover_events") == "kept"  # 0001's data untouched

    await upgrade_database(url, "0002")
    assert await _tables(url) == BASE_TABLES | SESSION_TABLES
    assert await _sql(url, "SELECT count(*) FROM failover_messages") == 0
    await downgrade_database(url, "base")
    assert await _tables(url) == {VERSION_TABLE}


async def test_models_and_migrations_do_not_drift(store_url: str) -> None:
    """A model changed without a migration (or the reverse) fails here, on both databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url = store_url
    await upgrade_database(url)
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "compare_server_default": True}
                    ),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()
    # The version table is Alembic's, not a model's.
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []
    assert {"failover_sessions", "failover_messages"} <= set(Base.metadata.tables)


async def test_the_drift_check_sees_a_difference(store_url: str) -> None:
    """The comparison is not vacuous: a column the migrations lack shows up as a difference."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import Column, Integer, MetaData, Table

    url = store_url
    await upgrade_database(url)
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("failover_messages", changed, Column("extra", Integer), extend_existing=True)
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), changed)
            )
    finally:
        await engine.dispose()
    added = [d for d in diff if d[0] == "add_column"]
    assert [(d[2], d[3].name) for d in added] == [("failover_messages", "extra")]
