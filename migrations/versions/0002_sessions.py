"""Create failover_sessions and failover_messages (conversation state, issue 3).

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01

Written out in full rather than importing the models, like 0001: this migration must keep
creating exactly these tables after the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite auto-numbers only ``INTEGER PRIMARY KEY``; PostgreSQL gets a BIGSERIAL.
_MESSAGE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "failover_sessions",
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("model_group", sa.String(255), nullable=False),
        sa.Column("pinned_deployment", sa.String(255), nullable=True),
        sa.Column("turn_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "model_group", name="pk_failover_sessions"),
    )
    op.create_index("ix_failover_sessions_updated_at", "failover_sessions", ["updated_at"])

    op.create_table(
        "failover_messages",
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
        sa.PrimaryKeyConstraint("id", name="pk_failover_messages"),
        sa.UniqueConstraint("session_id", "seq", name="uq_failover_messages_session_id_seq"),
    )
    op.create_index("ix_failover_messages_response_id", "failover_messages", ["response_id"])
    op.create_index("ix_failover_messages_created_at", "failover_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_failover_messages_created_at", table_name="failover_messages")
    op.drop_index("ix_failover_messages_response_id", table_name="failover_messages")
    op.drop_table("failover_messages")
    op.drop_index("ix_failover_sessions_updated_at", table_name="failover_sessions")
    op.drop_table("failover_sessions")
