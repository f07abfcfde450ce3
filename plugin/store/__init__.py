"""The store: the audit trail and deployment states in SQL (SQLite by default, PostgreSQL for fleets).

The plugin core writes only through ``StoreWriter`` (batched, bounded, off the request path);
``upgrade_database`` applies the packaged Alembic migrations; ``list_events`` and
``list_deployment_states`` are the read side used by the CLI.
"""

from __future__ import annotations

from litellm_failover.store.engine import StoreError, describe_error, redact_url
from litellm_failover.store.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from litellm_failover.store.queries import list_deployment_states, list_events
from litellm_failover.store.writer import StoreWriter

__all__ = [
    "StoreError",
    "StoreWriter",
    "current_revision",
    "describe_error",
    "downgrade_database",
    "head_revision",
    "list_deployment_states",
    "list_events",
    "redact_url",
    "upgrade_database",
]
