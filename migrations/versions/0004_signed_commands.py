"""Add failover_commands.signature: the operator command's authentication tag (issue 11).

Revision ID: 0004_signed_commands
Revises: 0003
Create Date: 2026-12-07

Replicas act only on commands whose tag (HMAC-SHA256 with a key from
``$LITELLM_FAILOVER_SIGNING_KEYS``, see ``litellm_failover.control.signing``) is valid, so a row
that anything with INSERT on the table wrote is refused rather than obeyed. Rows from before this
revision have no tag (NULL): they are refused as standing state too, unless
``control.insecure_unsigned`` is on. Written out rather than importing the models, like 0001-0003.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_signed_commands"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("failover_commands") as batch:
        batch.add_column(sa.Column("signature", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("failover_commands") as batch:
        batch.drop_column("signature")
