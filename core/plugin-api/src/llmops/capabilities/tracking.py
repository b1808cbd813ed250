"""Experiment tracking (US1): runs, params, metrics, artifacts, search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
    """An experiment tracker (MLflow, ...). Optionally also :class:`ProvidesJobEnvironment`
    and :class:`ValidatesRunWrites`."""

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


class JobAccess(Value):
    """What the platform issued to one training job for reaching its run: the address of
    the job's tracker proxy on the platform's API (which serves that run only, through
    :class:`ServesJobRequests`) and the job's own token, revoked when the job ends.

    A tracker whose tool needs credentials (or files of the platform's) points the job's
    client at ``tracker_url`` with ``token``: the integration's own secrets never reach a
    job."""

    tracker_url: str = Field(description="the proxy's base URL; the tool's paths go below it")
    token: SecretStr = Field(description="the job's own API token, scoped to its job")


@runtime_checkable
class ProvidesJobEnvironment(Protocol):
    """A tracker whose runs a training job's process may log into with the tool's own
    client."""

    def job_environment(self, run_id: str, access: JobAccess) -> Mapping[str, str | SecretStr]:
        """The variables the job's process needs (for MLflow, MLFLOW_TRACKING_URI and
        MLFLOW_RUN_ID). SecretStr values reach the job as secrets and are never stored.
        The only secret a job may get is ``access.token``: never one of the integration's
        own (its token, its password), which the job reaches through ``access.tracker_url``
        instead."""
        ...


class TrackerRequest(Value):
    """A request of a job's process to its tracker proxy, as the platform received it."""

    method: str = Field(description="GET or POST")
    path: str = Field(description="below the proxy's URL, without a leading '/'")
    query: dict[str, list[str]] = Field(default_factory=dict)
    body: dict[str, Any] | None = Field(default=None, description="the JSON body of a POST")


class TrackerResponse(Value):
    """The tracker's answer to a :class:`TrackerRequest`, in the tool's own JSON (its own
    error shape included: the job's client reads it)."""

    status: int = Field(default=200, ge=100, le=599)
    body: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class ServesJobRequests(Protocol):
    """A tracker that serves the tool's own client in a job's process through the
    platform's proxy (``JobAccess.tracker_url``), with its own credentials.

    The core has checked that the request comes from the job (or an admin) and found the
    job's run; the tracker answers only what concerns ``run_id`` and refuses the rest in
    the tool's own error shape. A refusal is an answer (``TrackerResponse``); raise only
    when the tool itself failed (unreachable: ``IntegrationUnavailable``), so that the
    guard's breaker counts only the tool's failures.
    """

    def job_request(self, run_id: str, request: TrackerRequest) -> TrackerResponse: ...


@runtime_checkable
class ValidatesRunWrites(Protocol):
    """A tracker that knows its tool's rules for what a run may hold (names, lengths,
    ranges), so the core refuses a write the tool would refuse before it is queued: a
    write refused on every delivery would otherwise wait in the retry queue for nothing.
    """

    def validate_run_write(
        self,
        *,
        experiment: str | None = None,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[MetricPoint] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Raise :class:`~llmops.errors.InvalidRequest` for the first value the tool
        would refuse, naming it in ``parameter`` (``metrics[3].key``, ``params``,
        ``tags``, ``experiment``); return None when the tool would take it all.

        Called on the request path, unguarded: it must decide from the values alone,
        without contacting the tool or importing its SDK, and must not raise anything
        else. It need not be complete: what it lets through and the tool refuses is
        dead-lettered on its first delivery."""
        ...
