"""Fixtures for testing a plugin against a real platform; opt in from your conftest::

    # conftest.py (the rootdir's)
    pytest_plugins = ["llmops.testing.pytest_plugin"]

Every fixture is named ``llmops_*``:

``llmops_settings``
    :class:`~llmops.config.CoreSettings` on the test's own data dir and a fresh SQLite
    database, with no plugin enabled unless the test asks: ``@pytest.mark.llmops_plugins
    ("mytool")``, or an override of ``llmops_enabled_plugins``. The core's settings come
    from the fixture only, never from ``LLMOPS_*`` variables of the shell running the
    tests; a plugin's own settings (``LLMOPS_<PLUGIN>__<FIELD>``) are read as always, so
    ``monkeypatch.setenv`` sets them.
``llmops_app``
    the FastAPI app of :func:`llmops.api.app.create_app`, started (database migrated,
    plugins loaded, worker running) for the length of the test.
``llmops_client``
    a ``TestClient`` on the started app that sends the admin key of ``llmops_keys``
    as ``Authorization: Bearer <key>``.
``llmops_client_as``
    ``llmops_client_as("viewer")``: a client sending that role's key (``None``: no key).
``llmops_keys``
    one API key per role (viewer, editor, admin) in the app's database.
``llmops_install_plugin``
    ``llmops_install_plugin(name, source)`` registers a plugin module under the entry
    point ``name`` until the test ends (no package to build).
``llmops_postgres``
    a PostgreSQL server started once per session from the system's binaries; only
    started by the tests that ask for it (``llmops_postgres_url`` gives a fresh
    database on it).

Importing this module does nothing but define them; nothing in the core knows it runs
under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.contracts import ContractSuite
from llmops.testing.plugins import PluginInstaller
from llmops.testing.postgres import PostgresServer

__all__ = ["ApiKeys", "FixtureSettings"]

MARKER = "llmops_plugins"
#: The roles ``llmops_keys`` makes a key for.
KEY_ROLES = (Role.VIEWER, Role.EDITOR, Role.ADMIN)

_contract_classes = pytest.StashKey[dict[str, type[ContractSuite]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): enable these plugins in llmops_settings (the closest marker wins)",
    )


# -------------------------------------------------------------------------------------
# Settings and database
# -------------------------------------------------------------------------------------


class FixtureSettings(CoreSettings):
    """CoreSettings from the values given only: no ``LLMOPS_*`` environment variables."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@pytest.fixture
def llmops_enabled_plugins(request: pytest.FixtureRequest) -> list[str]:
    """The plugins ``llmops_settings`` enables: the ``llmops_plugins`` marker's names, or
    none. Override it to enable plugins for a whole module or directory."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return []
    names = [str(name) for name in marker.args]
    if not names:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}() needs at least one plugin name")
    return names


@pytest.fixture
def llmops_database_url(tmp_path: Path) -> str:
    """A fresh SQLite database in the test's temporary folder. Override it with
    ``llmops_postgres_url`` to run on PostgreSQL."""
    return f"sqlite:///{tmp_path / 'llmops.db'}"


@pytest.fixture
def llmops_settings(
    tmp_path: Path, llmops_database_url: str, llmops_enabled_plugins: list[str]
) -> CoreSettings:
    """Settings for a platform on the test's own data dir and database."""
    return FixtureSettings(
        data_dir=tmp_path / "llmops-data",
        database_url=llmops_database_url,
        plugins=",".join(llmops_enabled_plugins) or "none",
        sync_interval_seconds=0.1,
        health_cache_seconds=1.0,
    )


# -------------------------------------------------------------------------------------
# The started app, keys and clients
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKeys:
    """The clear-text API key of each role (shown once, like the API does)."""

    viewer: str
    editor: str
    admin: str

    def __getitem__(self, role: str) -> str:
        name = Role(role).value
        if name not in {r.value for r in KEY_ROLES}:
            raise KeyError(f"no key for role {name!r}; there are {[r.value for r in KEY_ROLES]}")
        key: str = getattr(self, name)
        return key


@pytest.fixture
def llmops_app(llmops_settings: CoreSettings) -> Iterator[FastAPI]:
    """The app, started for the length of the test (its lifespan runs around it)."""
    app = create_app(llmops_settings)
    with TestClient(app):
        yield app


@pytest.fixture
def llmops_keys(llmops_app: FastAPI) -> ApiKeys:
    """One API key per role, created in the started app's database."""
    platform = llmops_app.state.platform
    with platform.transaction() as session:
        keys = {
            role.value: create_api_key(
                session=session, name=f"llmops-test-{role.value}", role=role
            )[1]
            for role in KEY_ROLES
        }
    return ApiKeys(**keys)


@pytest.fixture
def llmops_client_as(
    llmops_app: FastAPI, llmops_keys: ApiKeys
) -> Iterator[Callable[[str | None], TestClient]]:
    """``llmops_client_as(role)``: a client on the started app sending ``role``'s key;
    ``llmops_client_as(None)`` sends none."""
    clients: list[TestClient] = []

    def client_as(role: str | None) -> TestClient:
        headers = {} if role is None else {"Authorization": f"Bearer {llmops_keys[role]}"}
        client = TestClient(llmops_app, headers=headers)
        clients.append(client)
        return client

    try:
        yield client_as
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def llmops_client(llmops_client_as: Callable[[str | None], TestClient]) -> TestClient:
    """A client on the started app that authenticates as admin."""
    return llmops_client_as(Role.ADMIN.value)


@contextmanager
def started_client(settings: CoreSettings, role: Role = Role.ADMIN) -> Iterator[TestClient]:
    """``create_app(settings)`` started (migrated, plugins loaded, worker running) in a
    ``TestClient`` that sends a new key of ``role``: for a plugin's own fixtures that
    set the plugin up through ``LLMOPS_<PLUGIN>__*`` before the platform starts."""
    with TestClient(create_app(settings)) as client:
        platform = client.app.state.platform  # type: ignore[attr-defined]
        with platform.transaction() as session:
            _, key = create_api_key(session=session, name=f"llmops-test-{role.value}", role=role)
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


# -------------------------------------------------------------------------------------
# Plugins and PostgreSQL
# -------------------------------------------------------------------------------------


@pytest.fixture
def llmops_install_plugin(tmp_path: Path) -> Iterator[PluginInstaller]:
    """``llmops_install_plugin(name, source)`` installs ``source`` as the module of plugin
    ``name`` (entry point group ``llmops.plugins``) until the test ends; returns the
    module's name. Keyword arguments: ``module``, ``distribution``, ``version``."""
    installer = PluginInstaller(tmp_path / "llmops-site-packages")
    try:
        yield installer
    finally:
        installer.close()


@pytest.fixture(scope="session")
def llmops_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session, started on first use (``apt-get install
    postgresql``; the error says so when the binaries are missing)."""
    server = PostgresServer(tmp_path_factory.mktemp("llmops-postgres"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llmops_postgres_url(llmops_postgres: PostgresServer) -> str:
    """A fresh, empty database on ``llmops_postgres``."""
    return llmops_postgres.create_database()


# -------------------------------------------------------------------------------------
# Reporting the contract suites
# -------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    found: dict[str, type[ContractSuite]] = {}
    for item in items:
        cls = getattr(item, "cls", None)
        if isinstance(cls, type) and issubclass(cls, ContractSuite):
            found.setdefault(f"{item.nodeid.split('::')[0]}::{cls.__qualname__}", cls)
    config.stash[_contract_classes] = found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(_contract_classes, {})
    if not found:
        return
    terminalreporter.section("llmops contract suites")
    for where, cls in sorted(found.items()):
        if cls.not_supported:
            missing = ", ".join(sorted(cls.not_supported))
            line = (
                f"{where} ({cls.capability}): features not declared, their tests not run: {missing}"
            )
        else:
            line = f"{where} ({cls.capability}): every feature declared"
        terminalreporter.write_line(line)
