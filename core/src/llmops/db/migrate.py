"""Alembic, driven from code: ``llmops db upgrade`` and the app's start-up use these."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"

#: Alembic keeps its running context in module globals, so two migrations at once in one
#: process break each other (``KeyError: 'script'``). Every migration in the platform's
#: process holds this lock: the platform's own, and a plugin's tool that runs Alembic in
#: the platform's process (MLflow's SQL store, when its client starts).
MIGRATIONS_LOCK = threading.RLock()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with MIGRATIONS_LOCK:
        command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with MIGRATIONS_LOCK:
        command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
