"""The ``store_url`` fixture: each store test once on SQLite and once on PostgreSQL.

Load it with ``pytest_plugins = ["services", "store_fixtures"]`` (it builds on ``services``).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file, or a PostgreSQL schema of the test's own
    (``services.postgres_schema_url``: skipped, or failed under CI=true, without PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.db"
    return request.getfixturevalue("postgres_schema_url")
