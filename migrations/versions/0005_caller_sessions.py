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
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005_caller_sessions"
down_revision: str | None = "0004_signed_commands"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY = "legacy"
_MESSAGE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _sessions(*, caller: bool) -> sa.Table:
    """``failover_sessions`` as 0002 made it (and with ``caller`` added): what batch mode copies
    when it cannot reflect the table (``--sql`` on SQLite)."""
    extra = [sa.Column("caller", sa.String(64), nullable=False, server_default=LEGACY)] if caller else []
    return sa.Table(
        "failover_sessions",
        sa.MetaData(),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("model_group", sa.String(255), nullable=False),
        sa.Column("pinned_deployment", sa.String(255), nullable=True),
        sa.Column("turn_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *extra,
        sa.PrimaryKeyConstraint("session_id", "model_group", name="pk_failover_sessions"),
        sa.Index("ix_failover_sessions_updated_at", "updated_at"),
    )


def _messages(*, chained: bool) -> sa.Table:
    """``failover_messages`` as 0002 made it (and with the three columns added), like ``_sessions``."""
    extra = (
        [
            sa.Column("caller", sa.String(64), nullable=False, server_default=LEGACY),
            sa.Column("parent_hash", sa.String(128), nullable=True),
            sa.Column("chain_hash", sa.String(128), nullable=True),
        ]
        if chained
        else []
    )
    return sa.Table(
        "failover_messages",
        sa.MetaData(),
        sa.Column("id", _MESSAGE_ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("content_chars", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(255), nullable=True),
        sa.Column("response_id", sa.String(255), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *extra,
        sa.PrimaryKeyConstraint("id", name="pk_failover_messages"),
        sa.UniqueConstraint("session_id", "seq", name="uq_failover_messages_session_id_seq"),
        sa.Index("ix_failover_messages_response_id", "response_id"),
        sa.Index("ix_failover_messages_created_at", "created_at"),
    )


def _batch(name: str, shape: sa.Table) -> Any:
    """A batch that reflects the live table, or, generating SQL offline, copies ``shape``."""
    if context.is_offline_mode():
        return op.batch_alter_table(name, copy_from=shape)
    return op.batch_alter_table(name)


def upgrade() -> None:
    with _batch("failover_sessions", _sessions(caller=False)) as batch:
        batch.add_column(sa.Column("caller", sa.String(64), nullable=False, server_default=LEGACY))
    with _batch("failover_sessions", _sessions(caller=True)) as batch:
        batch.alter_column(
            "caller", server_default=None, existing_type=sa.String(64), existing_nullable=False
        )
        batch.drop_constraint("pk_failover_sessions", type_="primary")
        batch.create_primary_key("pk_failover_sessions", ["session_id", "caller", "model_group"])

    with _batch("failover_messages", _messages(chained=False)) as batch:
        batch.add_column(sa.Column("caller", sa.String(64), nullable=False, server_default=LEGACY))
        batch.add_column(sa.Column("parent_hash", sa.String(128), nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.String(128), nullable=True))
    # Every old message its own chain: unique, and never the parent of anything new.
    op.execute(sa.text("UPDATE failover_messages SET chain_hash = 'legacy-' || CAST(id AS VARCHAR(32))"))
    with _batch("failover_messages", _messages(chained=True)) as batch:
        batch.alter_column(
            "caller", server_default=None, existing_type=sa.String(64), existing_nullable=False
        )
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
