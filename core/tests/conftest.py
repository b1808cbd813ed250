"""Fixtures shared by the core's tests.

Every test gets its own data dir and database (``database_url``, from the workspace's
conftest.py: SQLite, and a PostgreSQL server the session starts once).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.plugins import PluginInstaller


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep tools (stevedore's entry-point cache, XDG dirs) out of the real home."""
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    for name in list(os.environ):
        if name.startswith("LLMOPS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., CoreSettings]:
    """Settings for a platform on the test's own data dir and database."""

    def make(**overrides: Any) -> CoreSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "plugins": "none",
            "sync_interval_seconds": 0.1,
            "health_cache_seconds": 1.0,
        }
        values.update(overrides)
        return CoreSettings(**values)

    return make


def _authenticate(client: TestClient, role: str = "admin") -> str:
    """Create a key of ``role`` in a started app's database; the client sends it from now
    on. Returns the key."""
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        _, key = create_api_key(session=session, name=f"test-{role}", role=Role(role))
    client.headers["Authorization"] = f"Bearer {key}"
    return key


@pytest.fixture
def authenticate() -> Callable[..., str]:
    """``authenticate(client, role="admin")``: the client sends a new key of that role."""
    return _authenticate


@pytest.fixture
def client(make_settings: Callable[..., CoreSettings]) -> Iterator[TestClient]:
    """A started platform (migrated database, plugins loaded, worker running), called
    with an admin key."""
    with TestClient(create_app(make_settings())) as test_client:
        _authenticate(test_client)
        yield test_client


@pytest.fixture
def api() -> str:
    return "/llm-ops/v1"


@pytest.fixture
def install(tmp_path: Path) -> Iterator[PluginInstaller]:
    """``install(name, source)`` registers a plugin until the test ends."""
    installer = PluginInstaller(tmp_path / "site-packages")
    try:
        yield installer
    finally:
        installer.close()


@pytest.fixture
def platform(
    make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str]
) -> Iterator[TestClient]:
    """A started platform whose tracker is the example plugin's, called with an admin key."""
    with TestClient(create_app(make_settings(plugins="example"))) as client:
        authenticate(client)
        yield client
