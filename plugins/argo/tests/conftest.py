"""One Argo Server double (llmops.testing.argo) for the session, reset after each test;
the provider under test talks to it with hera, and to its Secrets API with the official
``kubernetes`` client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from llmops.config import CoreSettings
from llmops.testing.argo import ArgoServerDouble, running_argo_server
from llmops.testing.pytest_plugin import started_client
from llmops_argo.provider import ArgoOrchestrator
from llmops_argo.settings import ArgoSettings

TOKEN = "argo-test-token"
NAMESPACE = "argo"


@pytest.fixture(scope="session")
def argo_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoServerDouble]:
    with running_argo_server(
        token=TOKEN, namespace=NAMESPACE, work_dir=tmp_path_factory.mktemp("argo-pods")
    ) as double:
        yield double


@pytest.fixture
def argo(argo_double: ArgoServerDouble) -> Iterator[ArgoServerDouble]:
    """The session's double, fresh for each test; no handler of it may have crashed."""
    argo_double.reset()
    yield argo_double
    argo_double.check_errors()
    argo_double.reset()


def settings_for(argo: ArgoServerDouble, **extra: Any) -> ArgoSettings:
    values: dict[str, Any] = {
        "server_url": argo.url,
        "token": argo.token,
        "namespace": argo.namespace,
        "default_image": "busybox:1.36",
        "kubernetes_api_url": argo.kubernetes_url,
        "kubernetes_token": argo.token,
        "request_timeout_seconds": 5,
        "cancel_grace_seconds": 0.3,
    }
    values.update(extra)
    return ArgoSettings.model_validate(values)


MakeProvider = Callable[..., ArgoOrchestrator]


@pytest.fixture
def make_provider(argo: ArgoServerDouble) -> Iterator[MakeProvider]:
    """``make_provider(**settings)``: a provider on the double (settings overridable),
    closed when the test ends."""
    made: list[ArgoOrchestrator] = []

    def make(**extra: Any) -> ArgoOrchestrator:
        provider = ArgoOrchestrator(settings_for(argo, **extra))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


# -------------------------------------------------------------------------------------
# A started platform with the plugin on, on SQLite and on PostgreSQL
# -------------------------------------------------------------------------------------


@pytest.fixture
def platform(
    argo: ArgoServerDouble, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The platform (``create_app``, started: migrated, plugins loaded, worker running)
    with the Argo plugin pointed at the double through ``LLMOPS_ARGO__*``, called with an
    admin key."""
    for name in list(os.environ):
        if name.startswith("LLMOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    plugin = settings_for(argo)
    for field, value in plugin.model_dump(mode="json").items():
        if value is not None:
            given = getattr(plugin, field)
            text = given.get_secret_value() if isinstance(given, SecretStr) else value
            monkeypatch.setenv(f"LLMOPS_ARGO__{field.upper()}", str(text))
    settings = CoreSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        plugins="argo",
        sync_interval_seconds=0.1,
        health_cache_seconds=0.1,
        circuit_reset_seconds=0.5,
    )
    with started_client(settings) as client:
        yield client
