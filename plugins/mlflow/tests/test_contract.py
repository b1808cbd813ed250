"""MlflowTracker passes the tracking contract suite against a real MLflow tracking server
and against a local SQLite store (the embedded default), the latter with a token that no
job may see."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from llmops.capabilities.tracking import MetricPoint
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
        "validates_run_writes",
    }
)


BEFORE_1970 = datetime(1969, 1, 1, tzinfo=UTC)


def refused_by_mlflow() -> list[dict[str, Any]]:
    """Writes MLflow refuses (plugins/mlflow/tests/test_rules.py shows that it does)."""
    return [
        {"metrics": [MetricPoint(key="loss\u2028x", value=1.0)]},
        {"metrics": [MetricPoint(key="loss", value=1.0, step=2**63)]},
        {"metrics": [MetricPoint(key="loss", value=1.0, timestamp=BEFORE_1970)]},
        {"metrics": [MetricPoint(key="../loss", value=1.0)]},
        {"params": {"lr\u2028": "0.1"}},
        {"params": {"prompt": "x" * 6001}},
        {"tags": {"note": "x" * 8001}},
        {"experiment": "e" * 501},
    ]


class TestMlflowServerContract(TrackingContract):
    supports = SUPPORTS

    @pytest.fixture
    def refused_run_writes(self) -> list[dict[str, Any]]:
        return refused_by_mlflow()

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


#: The local store's token: a store has no use for one, so it is a canary that no job may
#: see (the contract's job_environment test)
CANARY = "canary-token-7d1f"


class TestMlflowLocalStoreContract(TrackingContract):
    supports = SUPPORTS - {"unreachable"}

    @pytest.fixture
    def refused_run_writes(self) -> list[dict[str, Any]]:
        return refused_by_mlflow()

    @pytest.fixture
    def provider(self, local_store: Path) -> MlflowTracker:
        return MlflowTracker(
            f"sqlite:///{local_store / 'mlflow.db'}",
            artifact_location=(local_store / "artifacts").as_uri(),
            token=SecretStr(CANARY),
        )

    @pytest.fixture
    def integration_secrets(self) -> list[str]:
        return [CANARY]

    @pytest.fixture
    def restarted_provider(self, provider: MlflowTracker) -> MlflowTracker:
        return MlflowTracker(provider.tracking_uri, artifact_location=provider.artifact_location)
