"""the history of the integrations' health: each change of a provider's status, as a
platform process saw it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from llmops.db.models import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "integration_status_changes"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("plugin", sa.String(length=40), nullable=False),
        sa.Column("capability", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("previous", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index(f"ix_{TABLE}_at", TABLE, ["at"])
    op.create_index(f"ix_{TABLE}_provider_at", TABLE, ["plugin", "capability", "provider", "at"])


def downgrade() -> None:
    op.drop_index(f"ix_{TABLE}_provider_at", table_name=TABLE)
    op.drop_index(f"ix_{TABLE}_at", table_name=TABLE)
    op.drop_table(TABLE)
