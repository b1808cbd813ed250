"""runs held by a lease: the platform processes that drive runs, with their heartbeat,
the process that drives each pipeline run on the local executor, and cancels requested
through the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from llmops.db.models import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "executor_instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_executor_instances_heartbeat_at", "executor_instances", ["heartbeat_at"])
    with op.batch_alter_table("workflow_pipelines") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested_at", UtcDateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_workflow_pipelines_owner_id", ["owner_id"])


def downgrade() -> None:
    with op.batch_alter_table("workflow_pipelines") as batch:
        batch.drop_index("ix_workflow_pipelines_owner_id")
        batch.drop_column("cancel_requested_at")
        batch.drop_column("owner_id")
    op.drop_index("ix_executor_instances_heartbeat_at", table_name="executor_instances")
    op.drop_table("executor_instances")
