"""Experiment tracking (US1): runs, params, metrics, artifacts, search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import Field, SecretStr

from llmops.capabilities.common import Health, Value, utcnow


class RunStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"


class MetricPoint(Value):
    key: str = Field(min_length=1, max_length=250)
    value: float
    step: int = 0
    timestamp: datetime = Field(default_factory=utcnow)


class RunSpec(Value):
    """What the core asks for when it creates a run for a training job."""

    experiment: str = Field(min_length=1, description="experiment name, created when missing")
    run_name: str
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(
        default=None,
        description="the provider stores it with the run (a tag) and returns the existing "
        "run when asked again with the same key, so a retry never makes a second run",
    )


class RunInfo(Value):
    run_id: str
    experiment_id: str
    experiment_name: str
    name: str
    status: RunStatus
    start_time: datetime | None = None
    end_time: datetime | None = None
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    latest_metrics: dict[str, float] = Field(default_factory=dict)
    artifact_uri: str | None = None
    ui_url: str | None = None


class ArtifactInfo(Value):
    path: str
    is_dir: bool = False
    size_bytes: int | None = None


class RunQuery(Value):
    experiments: list[str] = Field(default_factory=list, description="names; empty means all")
    filter: str = Field(default="", description="the tool's filter syntax, e.g. MLflow's")
    order_by: list[str] = Field(default_factory=list)
    page_size: int = Field(default=100, ge=1, le=1000)
    page_token: str | None = None


class RunPage(Value):
    runs: list[RunInfo]
    next_page_token: str | None = None


@runtime_checkable
class TrackingProvider(Protocol):
    """An experiment tracker (MLflow, ...). Optionally also :class:`ProvidesJobEnvironment`."""

    #: Largest number of metric points the tool accepts in one call.
    max_metrics_per_batch: int

    def create_run(self, spec: RunSpec) -> RunInfo: ...
    def get_run(self, run_id: str) -> RunInfo: ...
    def end_run(self, run_id: str, status: RunStatus) -> RunInfo: ...
    def log_params(self, run_id: str, params: Mapping[str, str]) -> None: ...
    def log_metrics(self, run_id: str, metrics: Sequence[MetricPoint]) -> None: ...
    def log_artifact(
        self, run_id: str, local_path: Path, artifact_path: str | None = None
    ) -> ArtifactInfo: ...
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]: ...
    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...
    def search_runs(self, query: RunQuery) -> RunPage: ...
    def run_url(self, run_id: str) -> str | None: ...
    def health(self) -> Health: ...


@runtime_checkable
class ProvidesJobEnvironment(Protocol):
    """A tracker whose runs a training job's process may log into with the tool's own
    client."""

    def job_environment(self, run_id: str) -> Mapping[str, str | SecretStr]:
        """The variables the job's process needs (for MLflow, MLFLOW_TRACKING_URI and
        MLFLOW_RUN_ID). SecretStr values reach the job as secrets and are never stored."""
        ...
