"""The writer's statements, in each dialect's own INSERT ... ON CONFLICT form.

Events are inserted with ``ON CONFLICT (id) DO NOTHING``: when a commit reaches the server but
its acknowledgement is lost, the writer retries the batch, and the retry must not fail forever on
rows that are already there. States are upserted, and only a newer ``updated_at`` replaces a
stored one, so replicas sharing a database cannot overwrite a fresh state with a stale one.

Sessions are upserted so that turns add up (``turn_count + excluded.turn_count``: each replica
sends only the turns it saw since its last write), ``created_at`` stays the first one, and the
pin and ``updated_at`` move only forward in time. Messages are keyed on
``(session_id, caller, chain_hash)``: one row per message of a history, whether the copy comes
from a client resending its history, another replica or a retried batch; a different history at
the same position has another chain hash, and is kept as a branch. A copy adds nothing, with one
exception: an answer's own row carries what only it knows (the deployment that served it, its
response id and token counts), and where the answer was first stored as a copy in the next
turn's history (a stream's success log runs after the client has the answer, and can come after
the next request's), the answer's row fills those in. A copy never clears them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func
from sqlalchemy.dialects import postgresql, sqlite

from litellm_failover.store.models import (
    deployment_state_table,
    events_table,
    messages_table,
    sessions_table,
)

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


def upsert_sessions(dialect_name: str) -> Any:
    table = sessions_table
    stmt = _insert_for(dialect_name)(table)
    newer = stmt.excluded.updated_at >= table.c.updated_at
    return stmt.on_conflict_do_update(
        index_elements=[table.c.session_id, table.c.caller, table.c.model_group],
        set_={
            "turn_count": table.c.turn_count + stmt.excluded.turn_count,
            # A row without a pin says nothing about the pin: it never clears a stored one.
            "pinned_deployment": case(
                (newer, func.coalesce(stmt.excluded.pinned_deployment, table.c.pinned_deployment)),
                else_=table.c.pinned_deployment,
            ),
            "updated_at": case((newer, stmt.excluded.updated_at), else_=table.c.updated_at),
        },
    )


_ANSWER_DETAILS = ("deployment_id", "response_id", "prompt_tokens", "completion_tokens")


def insert_messages(dialect_name: str) -> Any:
    table = messages_table
    stmt = _insert_for(dialect_name)(table)
    # Only an answer's own row has a deployment; a history copy has none. So the update runs just
    # where a copy got there first, and a retried batch or a resent history writes nothing.
    return stmt.on_conflict_do_update(
        index_elements=[table.c.session_id, table.c.caller, table.c.chain_hash],
        set_={name: stmt.excluded[name] for name in _ANSWER_DETAILS},
        where=table.c.deployment_id.is_(None) & stmt.excluded.deployment_id.is_not(None),
    )
