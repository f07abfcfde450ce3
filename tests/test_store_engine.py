"""URL handling and error reporting: the parts of the store every other part relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.store.engine import (
    StoreError,
    _server_settings,
    create_engine,
    describe_error,
    parse_url,
    redact,
    redact_url,
    require_sqlite_file,
)
from litellm_failover.store.rows import event_row, jsonable


def test_plain_urls_get_async_drivers() -> None:
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert parse_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert parse_url("sqlite+aiosqlite:///x.db").drivername == "sqlite+aiosqlite"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql+aiomysql://u:pw1234@h/db", "unsupported database"),
        ("postgresql+psycopg2://u:pw1234@h/db", "not async"),
        ("not a url", "invalid database URL"),
    ],
)
def test_unsupported_urls_are_refused_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(StoreError) as info:
        parse_url(url)
    assert needle in str(info.value)
    assert "pw1234" not in str(info.value)


def test_redaction_covers_every_spelling_of_the_password() -> None:
    url = "postgresql+asyncpg://svc:p%40ss%2Fw0rd@db.internal:5432/llm"
    assert redact_url(url) == "postgresql+asyncpg://svc:***@db.internal:5432/llm"
    leaked = "failed for svc p@ss/w0rd and p%40ss%2Fw0rd via postgresql://other:hunter2@x/db"
    cleaned = redact(leaked, url)
    assert "p@ss/w0rd" not in cleaned and "p%40ss%2Fw0rd" not in cleaned and "hunter2" not in cleaned
    assert "postgresql://other:***@x/db" in cleaned


def test_describe_error_is_one_line_without_sql_or_password() -> None:
    url = "postgresql+asyncpg://svc:s3cr3t@db/llm"
    exc = OperationalError(
        "INSERT INTO failover_events VALUES (?)", {"x": 1}, Exception("auth failed: s3cr3t\nmore")
    )
    message = describe_error(exc, url)
    assert message == "Exception: auth failed: ***"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_postgres_options_become_asyncpg_server_settings() -> None:
    settings, rest = _server_settings(
        {"options": "-csearch_path=tenant_a -c statement_timeout=5000", "ssl": "x"}
    )
    assert settings == {"search_path": "tenant_a", "statement_timeout": "5000"}
    assert rest == {"ssl": "x"}
    assert _server_settings({"search_path": "b"})[0] == {"search_path": "b"}
    with pytest.raises(StoreError):
        _server_settings({"options": "-cnovalue"})


def test_engine_for_postgres_carries_the_schema_out_of_the_url() -> None:
    engine = create_engine("postgresql://u:pw@127.0.0.1:5432/db?options=-csearch_path%3Dtenant_a")
    assert "options" not in engine.url.query
    assert "pw" not in repr(engine)


def test_sqlite_directory_is_created_for_writers_and_required_for_readers(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/a/b/store.db"
    create_engine(url)
    assert (tmp_path / "a" / "b").is_dir()
    with pytest.raises(StoreError, match="database file not found"):
        require_sqlite_file(parse_url(url))


def test_rows_are_clipped_and_made_json_safe() -> None:
    event = FailoverEvent(
        event_type=EventType.FAILOVER,
        model_group="g" * 300,
        details={"when": datetime(2025, 1, 1, tzinfo=UTC), "delta": timedelta(seconds=1), "n": 1},
        created_at=datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    )
    row = event_row(event)
    assert row["event_type"] == "failover"
    assert len(row["model_group"]) == 255
    assert row["details"] == {"when": "2025-01-01 00:00:00+00:00", "delta": "0:00:01", "n": 1}
    circular: dict[str, object] = {}
    circular["self"] = circular
    assert "unserialisable" in jsonable(circular)
