"""Alembic environment: the engine comes from :func:`llmops.db.migrate.alembic_config`."""

from __future__ import annotations

from alembic import context

import llmops.db.governance  # noqa: F401  (its tables join Base's metadata)
from llmops.db.models import Base

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
