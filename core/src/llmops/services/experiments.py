"""Experiment runs of training jobs, through the tracking capability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.tracking import MetricPoint, RunInfo, RunPage, RunQuery, RunSpec
from llmops.db.models import ExperimentRun, utcnow
from llmops.errors import LlmopsError, NotFound
from llmops.integrations import IntegrationRuntime
from llmops.services import catalog, training


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
    training.get_job(session=session, job_id=job_id)
    row = _row_for_job(session, job_id)
    if row is None:
        raise NotFound(f"training job {job_id!r} has no experiment run", resource="experiment-run")
    if row.provider is None or row.external_id is None:
        return RunView(row)
    try:
        _, tracker = runtime.provider(Capability.TRACKING, row.provider)
        _apply(row, tracker.get_run(row.external_id))
    except LlmopsError as exc:
        return RunView(row, stale=True, reason=exc.detail)
    session.flush()
    return RunView(row)


def create_job_run(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    job_id: str,
    experiment: str | None,
    params: dict[str, str],
    tags: dict[str, str],
) -> tuple[RunView, bool]:
    """(run, created). Asking again for the same job returns its run: one run per job."""
    job = training.get_job(session=session, job_id=job_id)
    existing = _row_for_job(session, job_id)
    if existing is not None:
        return RunView(existing), False
    provider_name, tracker = runtime.provider(Capability.TRACKING)
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
    info = tracker.create_run(spec)
    row = ExperimentRun(
        training_job_id=job.id,
        provider=provider_name,
        experiment_name=experiment,
        run_name=job.name,
    )
    _apply(row, info)
    session.add(row)
    session.flush()
    return RunView(row), True


def log_job_metrics(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    job_id: str,
    metrics: Sequence[MetricPoint],
) -> int:
    """Forward metric points in the tool's batch size; returns the number of batches."""
    view = get_job_run(session=session, runtime=runtime, job_id=job_id)
    row = view.row
    if row.provider is None or row.external_id is None:
        raise NotFound("the experiment run has no tracker behind it")
    _, tracker = runtime.provider(Capability.TRACKING, row.provider)
    size = max(1, int(getattr(tracker, "max_metrics_per_batch", 1000)))
    batches = 0
    for start in range(0, len(metrics), size):
        tracker.log_metrics(row.external_id, list(metrics[start : start + size]))
        batches += 1
    latest = dict(row.latest_metrics)
    for point in sorted(metrics, key=lambda p: (p.step, p.timestamp)):
        latest[point.key] = point.value
    row.latest_metrics = latest
    row.synced_at = utcnow()
    session.flush()
    return batches


def search_runs(
    *, runtime: IntegrationRuntime, query: RunQuery, provider: str | None = None
) -> RunPage:
    _, tracker = runtime.provider(Capability.TRACKING, provider)
    page: RunPage = tracker.search_runs(query)
    return page
