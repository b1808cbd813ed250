"""pipelines and dataset versions: the versions a pipeline reads (pinned when it is
submitted) and the pipeline that wrote a version, for the lineage graph

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pipeline_inputs",
        sa.Column("pipeline_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_version_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_id", "dataset_version_id"),
    )
    op.create_index(
        "ix_pipeline_inputs_dataset_version_id", "pipeline_inputs", ["dataset_version_id"]
    )
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("pipeline_id", sa.String(length=32), nullable=True))
        batch.create_index("ix_dataset_versions_pipeline_id", ["pipeline_id"])


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_index("ix_dataset_versions_pipeline_id")
        batch.drop_column("pipeline_id")
    op.drop_index("ix_pipeline_inputs_dataset_version_id", table_name="pipeline_inputs")
    op.drop_table("pipeline_inputs")
