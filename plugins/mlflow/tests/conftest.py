"""One MLflow tracking server for the whole test session (llmops_mlflow.testing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmops_mlflow.testing import MlflowServer, running_mlflow_server


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    with running_mlflow_server() as server:
        yield server
