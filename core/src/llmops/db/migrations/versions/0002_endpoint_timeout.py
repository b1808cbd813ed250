"""serving endpoints: a request timeout for the inference gateway

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("serving_endpoints") as batch:
        batch.add_column(
            sa.Column("request_timeout_seconds", sa.Float(), nullable=False, server_default="60")
        )


def downgrade() -> None:
    with op.batch_alter_table("serving_endpoints") as batch:
        batch.drop_column("request_timeout_seconds")
