"""registry imports and exports: a model's registry links say what they are, how far they
got and what the last update check found, and long work reports its progress

Only columns are added (SQLite adds them in place): rebuilding ``models`` on SQLite would
drop and re-create it, and with foreign keys on, dropping it deletes the rows that point
at it (registry links) and unlinks others (jobs, endpoints).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_models") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="import")
        )
        batch.add_column(
            sa.Column("state", sa.String(length=20), nullable=False, server_default="pending")
        )
        batch.add_column(sa.Column("branch", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("operation_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("last_check", sa.JSON(), nullable=True))
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("progress")
    with op.batch_alter_table("registry_models") as batch:
        batch.drop_column("last_check")
        batch.drop_column("operation_id")
        batch.drop_column("branch")
        batch.drop_column("state")
        batch.drop_column("kind")
