"""Sessions belong to a caller; a session's messages form a history chain (issue 11 §4).

Revision ID: 0005_caller_sessions
Revises: 0004_signed_commands
Create Date: 2026-12-07

- ``failover_sessions`` gains ``caller`` (a hash of whom LiteLLM authenticated:
  ``sessions.identity.caller_of``) and its primary key becomes (session_id, caller, model_group):
  one session id used by two callers is two sessions.
- ``failover_messages`` gains ``caller``, ``parent_hash`` and ``chain_hash`` (the hash of the
  message and its whole history), and its unique key moves from (session_id, seq), where the
  first write won, to (session_id, caller, chain_hash), where a divergent history is a branch.

Rows written before this migration have no known caller: they get caller ``legacy``, which no
request ever has, so they are never read into a conversation (a Responses API rebuild, a pin
lookup, a warm-up) and age out through the retention purge; ``sessions show/delete`` still
reach them. Their messages get chain hash ``legacy-<id>`` (unique) and no parent.

Written out in full rather than importing the models, like 0001 to 0003. Batch mode, so that
SQLite (which cannot alter a constraint) copies each table; PostgreSQL alters it in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_caller_sessions"
down_revision: str | None = "0003"  # TEMP: "0004_signed_commands" once merged
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY = "legacy"


def upgrade() -> None:
    with op.batch_alter_table("failover_sessions") as batch:
        batch.add_column(sa.Column("caller", sa.String(64), nullable=False, server_default=LEGACY))
    with op.batch_alter_table("failover_sessions") as batch:
        batch.alter_column("caller", server_default=None, existing_type=sa.String(64), existing_nullable=False)
        batch.drop_constraint("pk_failover_sessions", type_="primary")
        batch.create_primary_key("pk_failover_sessions", ["session_id", "caller", "model_group"])

    with op.batch_alter_table("failover_messages") as batch:
        batch.add_column(sa.Column("caller", sa.String(64), nullable=False, server_default=LEGACY))
        batch.add_column(sa.Column("parent_hash", sa.String(128), nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.String(128), nullable=True))
    # Every old message its own chain: unique, and never the parent of anything new.
    op.execute(
        sa.text("UPDATE failover_messages SET chain_hash = 'legacy-' || CAST(id AS VARCHAR(32))")
    )
    with op.batch_alter_table("failover_messages") as batch:
        batch.alter_column("caller", server_default=None, existing_type=sa.String(64), existing_nullable=False)
        batch.alter_column("chain_hash", nullable=False, existing_type=sa.String(128))
        batch.drop_constraint("uq_failover_messages_session_id_seq", type_="unique")
        batch.create_unique_constraint(
            "uq_failover_messages_session_id_caller_chain_hash", ["session_id", "caller", "chain_hash"]
        )


def downgrade() -> None:
    """Back to one history per session id: only the oldest message of each (session, seq) and
    one session row per (session, group) survive (the older schema cannot hold the others)."""
    op.execute(
        sa.text(
            "DELETE FROM failover_messages WHERE id NOT IN "
            "(SELECT MIN(id) FROM failover_messages GROUP BY session_id, seq)"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM failover_sessions WHERE EXISTS (SELECT 1 FROM failover_sessions AS other "
            "WHERE other.session_id = failover_sessions.session_id "
            "AND other.model_group = failover_sessions.model_group "
            "AND other.updated_at > failover_sessions.updated_at)"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM failover_sessions WHERE EXISTS (SELECT 1 FROM failover_sessions AS other "
            "WHERE other.session_id = failover_sessions.session_id "
            "AND other.model_group = failover_sessions.model_group "
            "AND other.updated_at = failover_sessions.updated_at "
            "AND other.caller < failover_sessions.caller)"
        )
    )
    with op.batch_alter_table("failover_messages") as batch:
        batch.drop_constraint("uq_failover_messages_session_id_caller_chain_hash", type_="unique")
        batch.create_unique_constraint("uq_failover_messages_session_id_seq", ["session_id", "seq"])
        batch.drop_column("chain_hash")
        batch.drop_column("parent_hash")
        batch.drop_column("caller")
    with op.batch_alter_table("failover_sessions") as batch:
        batch.drop_constraint("pk_failover_sessions", type_="primary")
        batch.create_primary_key("pk_failover_sessions", ["session_id", "model_group"])
        batch.drop_column("caller")
