"""Fixtures every test directory of the workspace shares (core/tests, tests/, each
plugin's tests): one PostgreSQL server for the whole session, started from the Debian
binaries only when a test asks for it, and ``database_url``, parametrized over SQLite
and that server, a fresh empty database each time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.testing.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'llmops.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
