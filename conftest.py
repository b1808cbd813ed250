"""Fixtures every test directory of the workspace shares (core/tests, tests/, each
plugin's tests): one PostgreSQL server for the whole session, started from the Debian
binaries only when a test asks for it, and ``database_url``, parametrized over SQLite
and that server, a fresh empty database each time.

``make test`` runs the suite in parallel (pytest-xdist, ``--dist loadgroup``): the tests of
a folder whose session shares a server (each plugin's tests: its MLflow server, its local
Ray, its tool double; the console's tests: their running platform) form one group, which
one worker runs, so that server starts once; every other test goes to whichever worker is
free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.testing.postgres import PostgresServer

ROOT = Path(__file__).parent
#: folders whose tests share session-scoped servers: each is one xdist group
GROUPED = [ROOT / "tests" / "console", *sorted((ROOT / "plugins").glob("*/tests"))]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        for folder in GROUPED:
            if folder in path.parents:
                item.add_marker(pytest.mark.xdist_group(folder.relative_to(ROOT).as_posix()))
                break


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
