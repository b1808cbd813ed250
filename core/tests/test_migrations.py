"""The Alembic migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, String, delete, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from llmops.db.migrate import current_revision, downgrade, head_revision, upgrade
from llmops.db.models import ApiKey, Base, Dataset, DatasetVersion
from llmops.db.session import make_engine

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def upgraded(engine: Engine) -> Engine:
    upgrade(engine)
    return engine


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_differences(engine: Engine, metadata: MetaData) -> list[Any]:
    """What ``alembic revision --autogenerate`` would write to make the database ``metadata``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def test_upgrade_on_an_empty_database_creates_every_model_table(engine: Engine) -> None:
    assert table_names(engine) == set()

    upgrade(engine)

    assert table_names(engine) == MODEL_TABLES | {"alembic_version"}


def test_upgraded_database_is_at_the_head_revision(engine: Engine) -> None:
    assert current_revision(engine) is None

    upgrade(engine)

    assert current_revision(engine) == head_revision(engine)
    assert head_revision(engine) is not None


def test_downgrade_to_base_drops_every_table_and_upgrade_rebuilds_them(upgraded: Engine) -> None:
    downgrade(upgraded, "base")

    assert table_names(upgraded) == {"alembic_version"}
    assert current_revision(upgraded) is None

    upgrade(upgraded)

    assert table_names(upgraded) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(upgraded) == head_revision(upgraded)


def test_migrated_schema_matches_the_models(upgraded: Engine) -> None:
    assert schema_differences(upgraded, Base.metadata) == []


def test_schema_comparison_notices_a_column_that_drifted_from_the_migrations(
    upgraded: Engine,
) -> None:
    """Guards the test above: an empty diff must mean agreement, not a blind comparison."""
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["models"].c.name.type = String(100)  # the migration says 200

    differences = schema_differences(upgraded, drifted)

    # Column changes come grouped per column: [[(kind, schema, table, column, ...)]].
    [[(kind, _schema, table, column, _info, from_type, to_type)]] = differences
    assert (kind, table, column) == ("modify_type", "models", "name")
    assert (from_type.length, to_type.length) == (200, 100)


def test_sqlite_database_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'llmops.db'}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_database_refuses_a_row_whose_foreign_key_points_nowhere(upgraded: Engine) -> None:
    with Session(upgraded) as session:
        session.add(DatasetVersion(dataset_id="no-such-dataset", number=1))
        with pytest.raises(IntegrityError):
            session.commit()


def test_deleting_a_dataset_deletes_its_versions(upgraded: Engine) -> None:
    with Session(upgraded) as session:
        dataset = Dataset(name="corpus")
        session.add(dataset)
        session.flush()
        session.add(DatasetVersion(dataset_id=dataset.id, number=1))
        session.commit()

        session.execute(delete(Dataset).where(Dataset.id == dataset.id))
        session.commit()

        assert session.scalars(select(DatasetVersion)).all() == []


def in_a_non_utc_session_zone(session: Session) -> None:
    """PostgreSQL answers in the session's zone; make sure that is not UTC by chance."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TIME ZONE 'Asia/Kolkata'"))


def test_timestamps_come_back_as_the_same_instant_in_utc(upgraded: Engine) -> None:
    written = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    with Session(upgraded) as session:
        in_a_non_utc_session_zone(session)
        key = ApiKey(name="ci", prefix="llm_", key_hash="h" * 64, role="admin")
        key.created_at = written
        session.add(key)
        session.commit()
        key_id = key.id

    with Session(upgraded) as session:
        in_a_non_utc_session_zone(session)
        read = session.scalars(select(ApiKey.created_at).where(ApiKey.id == key_id)).one()

    assert read == written
    assert read.tzinfo is UTC
    assert read == datetime(2026, 3, 29, 6, 30, 15, 123456, tzinfo=UTC)


def test_naive_timestamps_are_refused(upgraded: Engine) -> None:
    with Session(upgraded) as session:
        key = ApiKey(name="ci", prefix="llm_", key_hash="h" * 64, role="admin")
        key.created_at = datetime(2026, 3, 29, 1, 30)  # naive on purpose
        session.add(key)
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_upgrading_to_0003_keeps_models_and_their_registry_links(engine: Engine) -> None:
    upgrade(engine, "0002")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, version, description, source, status, tags, "
                "labels, created_at, updated_at) VALUES ('m1', 'tiny', '1', '', 'manual', "
                "'registered', '[]', '{}', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO registry_models (id, model_id, provider, external_id, revision, "
                "details, imported_at) VALUES ('r1', 'm1', 'hf', 'acme/tiny', 'abc', '{}', :now)"
            ),
            {"now": now},
        )

    upgrade(engine)

    with engine.connect() as conn:
        columns = "model_id, kind, state, branch, operation_id, last_check"
        link = conn.execute(text(f"SELECT {columns} FROM registry_models")).one()
        assert conn.execute(text("SELECT count(*) FROM models")).scalar() == 1
    assert tuple(link) == ("m1", "import", "pending", None, None, None)
    assert {c["name"] for c in inspect(engine).get_columns("operations")} >= {"progress"}

    downgrade(engine, "0002")

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM registry_models")).scalar() == 1
