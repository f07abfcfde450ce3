"""Create failover_events (the audit trail) and failover_deployment_state.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full rather than importing the models: this migration must keep creating exactly
these tables after the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "failover_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("model_group", sa.String(255), nullable=False),
        sa.Column("deployment_id", sa.String(255), nullable=True),
        sa.Column("from_deployment", sa.String(255), nullable=True),
        sa.Column("to_deployment", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_failover_events"),
    )
    op.create_index("ix_failover_events_created_at", "failover_events", ["created_at"])
    op.create_index("ix_failover_events_event_type", "failover_events", ["event_type"])
    op.create_index("ix_failover_events_model_group", "failover_events", ["model_group"])

    op.create_table(
        "failover_deployment_state",
        sa.Column("deployment_id", sa.String(255), nullable=False),
        sa.Column("model_group", sa.String(255), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("checks", _JSON, nullable=False),
        sa.Column("ejection_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_failover_deployment_state"),
    )


def downgrade() -> None:
    op.drop_table("failover_deployment_state")
    op.drop_index("ix_failover_events_model_group", table_name="failover_events")
    op.drop_index("ix_failover_events_event_type", table_name="failover_events")
    op.drop_index("ix_failover_events_created_at", table_name="failover_events")
    op.drop_table("failover_events")
