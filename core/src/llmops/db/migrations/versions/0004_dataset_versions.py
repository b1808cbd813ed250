"""dataset versions: the field that names a dataset's rows (for row diffs); who made
each version, its tags, where its push to the versioning tool's remote is, and which
version it restored; a training job pins the dataset version it trained on

Only columns are added (SQLite adds them in place, see 0003).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("row_key", sa.String(length=200), nullable=True))
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("author", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("author_key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("push_state", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("push_operation_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("restored_from_id", sa.String(length=32), nullable=True))
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("dataset_version_id", sa.String(length=32), nullable=True))
        batch.create_index("ix_training_jobs_dataset_version_id", ["dataset_version_id"])


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_index("ix_training_jobs_dataset_version_id")
        batch.drop_column("dataset_version_id")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("restored_from_id")
        batch.drop_column("push_operation_id")
        batch.drop_column("push_state")
        batch.drop_column("tags")
        batch.drop_column("author_key_id")
        batch.drop_column("author")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("row_key")
