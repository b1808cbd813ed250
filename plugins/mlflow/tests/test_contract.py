"""MlflowTracker passes the tracking contract suite against a real MLflow tracking server
and against a local SQLite store (the embedded default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.testing.contracts.tracking import TrackingContract
from llmops.testing.processes import free_port
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker

SUPPORTS = frozenset(
    {
        "artifacts",
        "search_filter",
        "search_order",
        "immutable_params",
        "restart",
        "unreachable",
        "job_environment",
    }
)


class TestMlflowServerContract(TrackingContract):
    supports = SUPPORTS

    @pytest.fixture
    def provider(self, mlflow_server: MlflowServer) -> MlflowTracker:
        return MlflowTracker(mlflow_server.url, request_timeout=5)

    @pytest.fixture
    def restarted_provider(self, mlflow_server: MlflowServer) -> MlflowTracker:
        return MlflowTracker(mlflow_server.url, request_timeout=5)

    @pytest.fixture
    def unreachable_provider(self) -> MlflowTracker:
        return MlflowTracker(f"http://127.0.0.1:{free_port()}", request_timeout=2)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the module (each test works in an experiment of its own): creating
    MLflow's schema takes a second."""
    return tmp_path_factory.mktemp("mlflow-local")


class TestMlflowLocalStoreContract(TrackingContract):
    supports = SUPPORTS - {"unreachable"}

    @pytest.fixture
    def provider(self, local_store: Path) -> MlflowTracker:
        return MlflowTracker(
            f"sqlite:///{local_store / 'mlflow.db'}",
            artifact_location=(local_store / "artifacts").as_uri(),
        )

    @pytest.fixture
    def restarted_provider(self, provider: MlflowTracker) -> MlflowTracker:
        return MlflowTracker(provider.tracking_uri, artifact_location=provider.artifact_location)
