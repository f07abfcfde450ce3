"""The writer's two statements, in each dialect's own INSERT ... ON CONFLICT form.

Events are inserted with ``ON CONFLICT (id) DO NOTHING``: when a commit reaches the server but
its acknowledgement is lost, the writer retries the batch, and the retry must not fail forever on
rows that are already there. States are upserted, and only a newer ``updated_at`` replaces a
stored one, so replicas sharing a database cannot overwrite a fresh state with a stale one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from litellm_failover.store.models import deployment_state_table, events_table

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert_for(dialect_name: str) -> Any:
    try:
        return _INSERTS[dialect_name]
    except KeyError:
        raise ValueError(f"unsupported database dialect {dialect_name!r}") from None


def insert_events(dialect_name: str) -> Any:
    stmt = _insert_for(dialect_name)(events_table)
    return stmt.on_conflict_do_nothing(index_elements=[events_table.c.id])


def upsert_states(dialect_name: str) -> Any:
    table = deployment_state_table
    stmt = _insert_for(dialect_name)(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.deployment_id],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if not c.primary_key},
        where=table.c.updated_at <= stmt.excluded.updated_at,
    )
