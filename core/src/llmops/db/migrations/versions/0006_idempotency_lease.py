"""idempotency keys held by a lease: the request that holds an in-progress key, until
when, and whether (and where) its write committed, so that a key a crash left in progress
is taken over once the lease runs out

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from llmops.db.models import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_records") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("committed_at", UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replay_path", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("replay_status", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_records") as batch:
        for column in ("replay_status", "replay_path", "committed_at", "lease_until", "owner"):
            batch.drop_column(column)
