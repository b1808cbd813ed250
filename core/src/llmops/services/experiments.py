"""Experiment runs of training jobs, through the tracking capability."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.auth import API
from llmops.capabilities.common import Capability
from llmops.capabilities.tracking import (
    JobAccess,
    MetricPoint,
    ProvidesJobEnvironment,
    RunInfo,
    RunPage,
    RunQuery,
    RunSpec,
    RunStatus,
    ServesJobRequests,
    TrackerRequest,
    TrackerResponse,
    TrackingProvider,
    ValidatesRunWrites,
)
from llmops.db.models import ExperimentRun, Operation, TrainingJob, utcnow
from llmops.errors import IntegrationUnavailable, LlmopsError, NoProviderEnabled, NotFound
from llmops.integrations import IntegrationRuntime
from llmops.resilience.errors import retryable
from llmops.resilience.outbox import Delivery, OperationStatus, enqueue
from llmops.services import catalog
from llmops.services.jobs import get_job


@dataclass(frozen=True)
class RunView:
    row: ExperimentRun
    stale: bool = False
    reason: str | None = None


def _row_for_job(session: Session, job_id: str) -> ExperimentRun | None:
    return session.scalars(
        select(ExperimentRun).where(ExperimentRun.training_job_id == job_id)
    ).first()


def _apply(row: ExperimentRun, info: RunInfo) -> None:
    row.external_id = info.run_id
    row.experiment_name = info.experiment_name
    row.status = info.status.value
    row.params = dict(info.params)
    row.latest_metrics = dict(info.latest_metrics)
    row.ui_url = info.ui_url
    row.synced_at = utcnow()


def get_job_run(*, session: Session, runtime: IntegrationRuntime, job_id: str) -> RunView:
    get_job(session=session, job_id=job_id)
    row = _row_for_job(session, job_id)
    if row is None:
        raise NotFound(f"training job {job_id!r} has no experiment run", resource="experiment-run")
    if row.provider is None or row.external_id is None:
        return RunView(row)
    try:
        _, tracker = runtime.tracking_provider(row.provider)
        _apply(row, tracker.get_run(row.external_id))
    except LlmopsError as exc:
        return RunView(row, stale=True, reason=exc.detail)
    session.flush()
    return RunView(row)


RUN_CREATE = "run.create"
RUN_METRICS = "run.metrics"
RUN_FINISH = "run.finish"

#: How many queued metric operations of one run a delivery takes along at most.
MAX_COALESCED_OPERATIONS = 200


def validate_run_write(
    runtime: IntegrationRuntime,
    provider: str,
    *,
    experiment: str | None = None,
    params: dict[str, str] | None = None,
    metrics: Sequence[MetricPoint] = (),
    tags: dict[str, str] | None = None,
) -> None:
    """Refuse now (422, nothing stored or queued) what the provider's tool would refuse on
    every delivery, when the provider states its tool's rules (:class:`ValidatesRunWrites`;
    the call is not guarded and contacts nothing). Without them, such a write dies on its
    first delivery instead."""
    _, tracker = runtime.tracking_provider(provider)
    if isinstance(tracker, ValidatesRunWrites):
        tracker.validate_run_write(experiment=experiment, params=params, metrics=metrics, tags=tags)


def create_job_run(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    job_id: str,
    experiment: str | None,
    params: dict[str, str],
    tags: dict[str, str],
) -> tuple[RunView, Operation | None]:
    """The job's run, recorded with its creation in the outbox (the caller commits, then
    delivers). Asking again for the same job returns its run: one run per job."""
    job = get_job(session=session, job_id=job_id)
    existing = _row_for_job(session, job_id)
    if existing is not None:
        return RunView(existing), None
    provider_name, _ = runtime.tracking_provider()
    if experiment is None:
        experiment = (
            catalog.get_model(session=session, model_id=job.model_id).name
            if job.model_id
            else "default"
        )
    spec = RunSpec(
        experiment=experiment,
        run_name=job.name,
        params={**{k: str(v) for k, v in job.hyperparameters.items()}, **params},
        tags={**tags, "llmops.training_job_id": job.id},
        idempotency_key=f"training-job-{job.id}",
    )
    validate_run_write(
        runtime, provider_name, experiment=experiment, params=spec.params, tags=spec.tags
    )
    row = ExperimentRun(
        training_job_id=job.id,
        provider=provider_name,
        experiment_name=experiment,
        run_name=job.name,
        status="scheduled",
        params=dict(spec.params),
    )
    session.add(row)
    session.flush()
    operation = enqueue(
        session,
        kind=RUN_CREATE,
        provider=provider_name,
        capability=Capability.TRACKING.value,
        idempotency_key=spec.idempotency_key or f"training-job-{job.id}",
        payload={"runId": row.id, "spec": spec.model_dump(mode="json")},
        resource_type="experiment-run",
        resource_id=row.id,
    )
    finish_job_run(session=session, job=job)  # a job that has already ended: its run too
    return RunView(row), operation


def deliver_run_create(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object]:
    """The outbox handler of :data:`RUN_CREATE`: the tracker dedups by the key's tag."""
    row = delivery.session.get(ExperimentRun, delivery.payload["runId"])
    if row is None:
        return {"skipped": "the run's job was deleted"}
    spec = RunSpec.model_validate(delivery.payload["spec"])
    _, tracker = runtime.tracking_provider(row.provider)
    info = tracker.create_run(spec)
    _apply(row, info)
    return {"externalId": info.run_id}


def log_job_metrics(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    job_id: str,
    metrics: Sequence[MetricPoint],
) -> Operation:
    """Acknowledge metric points durably (an outbox operation) and note the latest values;
    the tracker receives them in its batch size when the operation is delivered."""
    get_job(session=session, job_id=job_id)
    row = _row_for_job(session, job_id)
    if row is None:
        raise NotFound(f"training job {job_id!r} has no experiment run", resource="experiment-run")
    if row.provider is None:
        raise NotFound("the experiment run has no tracker behind it")
    validate_run_write(runtime, row.provider, metrics=metrics)  # 409 when its plugin is off
    latest = dict(row.latest_metrics)
    for point in sorted(metrics, key=lambda p: (p.step, p.timestamp)):
        latest[point.key] = point.value
    row.latest_metrics = latest
    session.flush()
    return enqueue(
        session,
        kind=RUN_METRICS,
        provider=row.provider,
        capability=Capability.TRACKING.value,
        idempotency_key=f"run-{row.id}-metrics-{uuid.uuid4().hex}",
        payload={"runId": row.id, "points": [m.model_dump(mode="json") for m in metrics]},
        resource_type="experiment-run",
        resource_id=row.id,
    )


def deliver_run_metrics(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object]:
    """The outbox handler of :data:`RUN_METRICS`. It takes along the run's other queued
    metric operations, so that points piled up during an outage leave in as few calls as
    the tool's batch limit allows. A repeated delivery sends identical points (key, value,
    step, time), which trackers such as MLflow store once.

    When the tool refuses the coalesced points for good, each operation is sent on its
    own: the tool gets every write it takes, and each refused one is dead-lettered with
    its reason (this one by raising), so one poison write neither takes good points down
    with it nor comes back with every later delivery."""
    session = delivery.session
    row = session.get(ExperimentRun, delivery.payload["runId"])
    if row is None:
        return {"skipped": "the run was deleted", "batches": 0}
    if row.external_id is None:
        raise IntegrationUnavailable(
            "the run is not created in its tracker yet", waits_on=RUN_CREATE
        )
    run_id = row.external_id
    _, tracker = runtime.tracking_provider(row.provider)
    siblings = list(
        session.scalars(
            select(Operation)
            .where(
                Operation.kind == RUN_METRICS,
                Operation.resource_id == row.id,
                Operation.status == OperationStatus.PENDING.value,
                Operation.id != delivery.operation.id,
            )
            .order_by(Operation.created_at, Operation.id)
            .limit(MAX_COALESCED_OPERATIONS)
        )
    )
    carried = {"coalescedInto": delivery.operation.id}
    points = _points(delivery.payload, *(op.payload for op in siblings))
    try:
        batches = _log_points(tracker, run_id, points)
    except LlmopsError as exc:
        if not siblings or not _refused_points(exc):
            raise
        batches = 0
        for op in siblings:
            try:
                batches += _log_points(tracker, run_id, _points(op.payload))
            except LlmopsError as refused:
                if not _refused_points(refused):
                    raise  # transient: this delivery is retried; what was sent is kept
                delivery.refused(op.id, refused.detail)
            else:
                delivery.took_along(op.id, carried)
        batches += _log_points(tracker, run_id, _points(delivery.payload))
    else:
        for op in siblings:  # a worker that claimed one meanwhile sends identical points
            delivery.took_along(op.id, carried)
    row.synced_at = utcnow()
    return {"batches": batches, "points": len(points), "coalesced": len(siblings)}


def _points(*payloads: Mapping[str, Any]) -> list[MetricPoint]:
    points = [MetricPoint.model_validate(p) for payload in payloads for p in payload["points"]]
    return sorted(points, key=lambda p: (p.timestamp, p.step))


def _log_points(tracker: TrackingProvider, run_id: str, points: Sequence[MetricPoint]) -> int:
    """Send ``points`` in the tracker's batch size; returns the number of calls."""
    size = max(1, int(tracker.max_metrics_per_batch))
    batches = 0
    for start in range(0, len(points), size):
        tracker.log_metrics(run_id, points[start : start + size])
        batches += 1
    return batches


def _refused_points(error: LlmopsError) -> bool:
    """Whether the tool refused the points themselves, for good: not an outage (retried),
    not a disabled plugin (waits), not the run gone from the tool (refuses them all)."""
    return not retryable(error) and not isinstance(error, NoProviderEnabled | NotFound)


def tracker_proxy_url(api_url: str, job_id: str) -> str:
    """Where a job's process reaches its run's tracker through the platform (the route
    ``/training/jobs/{jobId}/experiment-run/tracker/{path}``)."""
    job = quote(job_id, safe="")
    return f"{api_url.rstrip('/')}{API}/training/jobs/{job}/experiment-run/tracker"


def job_run_environment(
    *, session: Session, runtime: IntegrationRuntime, job_id: str, job_token: SecretStr
) -> tuple[dict[str, str], dict[str, SecretStr]]:
    """What a job's process needs to log into its own run with the tool's own client (for
    MLflow: MLFLOW_TRACKING_URI and MLFLOW_RUN_ID), asked for when the job is handed to its
    orchestrator. The tracker gets the job's :class:`JobAccess` (its proxy URL and
    ``job_token``), never more: a secret it returns that is not the job's token is a bug.
    A run not yet created in its tracker is created now, under the key its queued creation
    uses, so never twice. While the tracker is away the job waits, and the wait is not
    counted as an attempt: a job that started without its run would log into a second one."""
    row = _row_for_job(session, job_id)
    if row is None or row.provider is None:
        return {}, {}
    try:
        _, tracker = runtime.tracking_provider(row.provider)
    except NoProviderEnabled:
        return {}, {}  # tracking was switched off: the job runs, its run waits
    if row.external_id is None:
        creation = session.scalars(
            select(Operation).where(Operation.resource_id == row.id, Operation.kind == RUN_CREATE)
        ).first()
        if creation is None:
            return {}, {}
        try:
            info = tracker.create_run(RunSpec.model_validate(creation.payload["spec"]))
        except LlmopsError as exc:
            if not retryable(exc):
                raise
            raise IntegrationUnavailable(
                f"waiting for its experiment run in {row.provider}: {exc.detail}",
                waits_on=RUN_CREATE,
                retry_after=exc.extensions.get("retry_after"),
            ) from exc
        _apply(row, info)
    if not isinstance(tracker, ProvidesJobEnvironment) or row.external_id is None:
        return {}, {}
    access = JobAccess(
        tracker_url=tracker_proxy_url(runtime.settings.api_url, job_id), token=job_token
    )
    plain: dict[str, str] = {}
    secret: dict[str, SecretStr] = {}
    for name, value in dict(tracker.job_environment(row.external_id, access)).items():
        if isinstance(value, SecretStr):
            secret[name] = value
        else:
            plain[name] = str(value)
    return plain, secret


def job_tracker_request(
    *, session: Session, runtime: IntegrationRuntime, job_id: str, request: TrackerRequest
) -> TrackerResponse:
    """Hand a request of the job's process (its tool's own client, at
    :func:`tracker_proxy_url`) to the tracker of the job's run, through the guard. The
    tracker answers for that run only, with its own credentials."""
    get_job(session=session, job_id=job_id)
    row = _row_for_job(session, job_id)
    if row is None or row.provider is None:
        raise NotFound(f"training job {job_id!r} has no experiment run", resource="experiment-run")
    _, tracker = runtime.tracking_provider(row.provider)
    if not isinstance(tracker, ServesJobRequests):
        raise NotFound(f"tracker {row.provider!r} serves no requests of jobs' processes")
    if row.external_id is None:
        raise IntegrationUnavailable(
            "the run is not created in its tracker yet", waits_on=RUN_CREATE
        )
    return tracker.job_request(row.external_id, request)


_RUN_STATUS_OF_JOB = {
    "succeeded": RunStatus.FINISHED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.KILLED,
}


def finish_job_run(*, session: Session, job: TrainingJob) -> Operation | None:
    """When a job ends: queue the end of its run, with the job's outputs as artifacts."""
    status = _RUN_STATUS_OF_JOB.get(job.status)
    row = _row_for_job(session, job.id)
    if status is None or row is None or row.provider is None:
        return None
    row.status = status.value
    payload: dict[str, object] = {"runId": row.id, "status": status.value}
    output_dir = (job.spec or {}).get("outputDir")
    if output_dir:
        payload["outputDir"] = output_dir
    return enqueue(
        session,
        kind=RUN_FINISH,
        provider=row.provider,
        capability=Capability.TRACKING.value,
        idempotency_key=f"run-{row.id}-finish-{uuid.uuid4().hex}",
        payload=payload,
        resource_type="experiment-run",
        resource_id=row.id,
    )


def deliver_run_finish(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object]:
    """The outbox handler of :data:`RUN_FINISH`: log what the job left in its output
    folder (each entry keeps its name; a saved model folder becomes the run's ``model``
    artifact) and end the run with the job's outcome. Repeating it logs the same files
    again and ends the run with the same status."""
    row = delivery.session.get(ExperimentRun, delivery.payload["runId"])
    if row is None:
        return {"skipped": "the run was deleted"}
    if row.external_id is None:
        raise IntegrationUnavailable(
            "the run is not created in its tracker yet", waits_on=RUN_CREATE
        )
    _, tracker = runtime.tracking_provider(row.provider)
    artifacts: list[str] = []
    output = delivery.payload.get("outputDir")
    if output and Path(output).is_dir():
        for entry in sorted(Path(output).iterdir()):
            artifacts.append(tracker.log_artifact(row.external_id, entry).path)
    info = tracker.end_run(row.external_id, RunStatus(delivery.payload["status"]))
    _apply(row, info)
    return {"artifacts": artifacts}


@dataclass(frozen=True)
class Comparison:
    runs: list[RunInfo]
    histories: dict[str, dict[str, list[MetricPoint]]]  # run id -> key -> points
    metric_keys: list[str]
    params: list[tuple[str, dict[str, str | None], bool]]  # key, values by run, differs


def compare_runs(
    *,
    runtime: IntegrationRuntime,
    run_ids: Sequence[str],
    metrics: Sequence[str] | None = None,
    provider: str | None = None,
) -> Comparison:
    """Several runs side by side: each metric's full history and every param, with the
    params that differ between runs listed first."""
    _, tracker = runtime.tracking_provider(provider)
    ids = list(dict.fromkeys(run_ids))  # a run asked twice is shown once
    runs = [tracker.get_run(run_id) for run_id in ids]
    keys = (
        list(dict.fromkeys(metrics))
        if metrics is not None
        else sorted({k for run in runs for k in run.latest_metrics})
    )
    histories = {
        run.run_id: {
            key: tracker.metric_history(run.run_id, key) if key in run.latest_metrics else []
            for key in keys
        }
        for run in runs
    }
    rows: list[tuple[str, dict[str, str | None], bool]] = []
    for key in sorted({k for run in runs for k in run.params}):
        values = {run.run_id: run.params.get(key) for run in runs}
        rows.append((key, values, len(set(values.values())) > 1))
    rows.sort(key=lambda row: (not row[2], row[0]))
    return Comparison(runs=runs, histories=histories, metric_keys=keys, params=rows)


def search_runs(
    *, runtime: IntegrationRuntime, query: RunQuery, provider: str | None = None
) -> RunPage:
    _, tracker = runtime.tracking_provider(provider)
    page: RunPage = tracker.search_runs(query)
    return page
