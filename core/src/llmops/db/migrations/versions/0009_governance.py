"""governance: the policies and prices an admin sets, and the intervals of replica and
GPU use of serving endpoints that costs are estimated from

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from llmops.db.models import UtcDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USAGE = "endpoint_usage"


def upgrade() -> None:
    op.create_table(
        "governance_settings",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_governance_settings")),
    )
    op.create_table(
        USAGE,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_name", sa.String(length=63), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("gpus_per_replica", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{USAGE}")),
    )
    op.create_index(f"ix_{USAGE}_started_at", USAGE, ["started_at"])
    op.create_index(f"ix_{USAGE}_endpoint_id_ended_at", USAGE, ["endpoint_id", "ended_at"])


def downgrade() -> None:
    op.drop_index(f"ix_{USAGE}_endpoint_id_ended_at", table_name=USAGE)
    op.drop_index(f"ix_{USAGE}_started_at", table_name=USAGE)
    op.drop_table(USAGE)
    op.drop_table("governance_settings")
