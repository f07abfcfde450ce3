"""The store: the audit trail, deployment states and conversation state in SQL (SQLite by default,
PostgreSQL for fleets).

The plugin core writes only through ``StoreWriter`` (batched, bounded, off the request path);
``upgrade_database`` applies the packaged Alembic migrations; ``list_events`` and
``list_deployment_states`` are the read side used by the CLI; ``store.conversations`` reads and
deletes sessions and messages, and ``RetentionPurger`` expires them.
"""

from __future__ import annotations

from litellm_failover.store.conversations import (
    SessionGroup,
    StoredMessage,
    delete_session,
    find_response,
    list_sessions,
    load_messages,
    load_session,
    purge_expired,
)
from litellm_failover.store.engine import StoreError, describe_error, reading_engine, redact_url
from litellm_failover.store.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from litellm_failover.store.queries import list_deployment_states, list_events
from litellm_failover.store.retention import RetentionPurger
from litellm_failover.store.writer import StoreWriter

__all__ = [
    "RetentionPurger",
    "SessionGroup",
    "StoreError",
    "StoreWriter",
    "StoredMessage",
    "current_revision",
    "delete_session",
    "describe_error",
    "downgrade_database",
    "find_response",
    "head_revision",
    "list_deployment_states",
    "list_events",
    "list_sessions",
    "load_messages",
    "load_session",
    "purge_expired",
    "reading_engine",
    "redact_url",
    "upgrade_database",
]
