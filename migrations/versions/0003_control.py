"""Create failover_commands, failover_command_results and failover_control_replicas (issue 4).

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01

Operator commands travel through these tables when the fleet has no Redis: the CLI inserts a
command, every running replica polls for new ones, applies them and writes its result; replicas
announce themselves in ``failover_control_replicas`` so the CLI knows whose answers to wait for.
Written out in full rather than importing the models, like 0001 and 0002.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite auto-numbers only ``INTEGER PRIMARY KEY``; PostgreSQL gets a BIGSERIAL.
_COMMAND_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "failover_commands",
        sa.Column("id", _COMMAND_SEQ, autoincrement=True, nullable=False),
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("args", _JSON, nullable=False),
        sa.Column("issued_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_failover_commands"),
        sa.UniqueConstraint("command_id", name="uq_failover_commands_command_id"),
    )
    op.create_table(
        "failover_command_results",
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("command_id", "instance_id", name="pk_failover_command_results"),
    )
    op.create_table(
        "failover_control_replicas",
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name="pk_failover_control_replicas"),
    )


def downgrade() -> None:
    op.drop_table("failover_control_replicas")
    op.drop_table("failover_command_results")
    op.drop_table("failover_commands")
