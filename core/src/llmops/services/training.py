"""Training jobs. A job runs as a pipeline through the orchestration capability; its
process learns where it is through the environment (LLMOPS_API_URL, LLMOPS_JOB_ID, a token
scoped to the job, LLMOPS_JOB_TOKEN, which is never stored in clear, and LLMOPS_OUTPUT_DIR,
whose contents become the run's artifacts). With a tracker enabled, each job gets an
experiment run, created through the outbox, and the tracker's own variables (for MLflow:
MLFLOW_TRACKING_URI and MLFLOW_RUN_ID)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.orchestration import PipelineSpec, StageLog, StageSpec
from llmops.config import CoreSettings
from llmops.db.models import (
    CatalogModel,
    DatasetVersion,
    Operation,
    TrainingJob,
    WorkflowPipeline,
)
from llmops.errors import Conflict, InvalidRequest
from llmops.integrations import IntegrationRuntime
from llmops.services import catalog, dataset_versions, experiments, pipelines
from llmops.services.jobs import get_job
from llmops.services.pagination import Page, paginate

SORTS = {"createdAt": TrainingJob.created_at, "name": TrainingJob.name}


def submit_job(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    settings: CoreSettings,
    name: str,
    stages: Sequence[StageSpec],
    model_id: str | None = None,
    dataset_id: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    provider: str | None = None,
    track: bool = True,
    experiment: str | None = None,
    fallback: str | None = None,
) -> tuple[TrainingJob, Operation, Operation | None]:
    """Record the job, its pipeline's submission and, when ``track`` and a tracker is
    enabled, its run's creation (the caller commits, then delivers the run first).
    ``fallback``: see :func:`llmops.services.pipelines.submit_pipeline`."""
    if model_id is not None:
        catalog.get_model(session=session, model_id=model_id)
    pinned: DatasetVersion | None = None
    if dataset_id is not None:
        catalog.get_dataset(session=session, dataset_id=dataset_id)
        # the job trains on the dataset as it is now: its latest version, for the lineage
        pinned = dataset_versions.latest_version(session, dataset_id)
    hyperparameters = hyperparameters or {}
    job = TrainingJob(
        name=name,
        model_id=model_id,
        dataset_id=dataset_id,
        dataset_version_id=pinned.id if pinned is not None else None,
        hyperparameters=hyperparameters,
        spec={"stages": [s.model_dump(mode="json") for s in stages]},
    )
    session.add(job)
    session.flush()
    output_dir = job_output_dir(settings, job.id)
    output_dir.mkdir(parents=True, exist_ok=True)
    job.spec = {**job.spec, "outputDir": str(output_dir)}
    job_env = {
        "LLMOPS_API_URL": settings.api_url,
        "LLMOPS_JOB_ID": job.id,
        "LLMOPS_HYPERPARAMETERS": json.dumps(hyperparameters, sort_keys=True),
        "LLMOPS_OUTPUT_DIR": str(output_dir),
    }
    if model_id is not None:
        job_env["LLMOPS_MODEL_ID"] = model_id
    if dataset_id is not None:
        job_env["LLMOPS_DATASET_ID"] = dataset_id
        job_env["LLMOPS_DATASET_PATH"] = str(
            Path(catalog.dataset_dir(settings.storage_dir, dataset_id)).resolve()
        )
    spec = PipelineSpec(
        name=f"training-{name}",
        stages=[s.model_copy(update={"env": {**job_env, **s.env}}) for s in stages],
        labels={"llmops.training-job": job.id},
        # what a sandboxed job may see of the data dir: its dataset, and its output dir
        read_paths=[job_env["LLMOPS_DATASET_PATH"]] if dataset_id is not None else [],
        write_paths=[str(output_dir)],
    )
    row, operation = pipelines.submit_pipeline(
        session=session,
        runtime=runtime,
        spec=spec,
        provider=provider,
        training_job_id=job.id,
        fallback=fallback,
    )
    job.pipeline_id = row.id
    job.status = row.status
    job.message = row.message
    session.flush()
    run_operation = None
    if track and runtime.has_provider(Capability.TRACKING):
        tags = {"llmops.job_url": f"{settings.api_url}/training/{job.id}"}
        if model_id is not None:
            tags["llmops.model_id"] = model_id
        if dataset_id is not None:
            tags["llmops.dataset_id"] = dataset_id
            dataset = catalog.get_dataset(session=session, dataset_id=dataset_id)
            tags["llmops.dataset"] = dataset.name
            if pinned is not None:
                tags["llmops.dataset_version"] = str(pinned.number)
                tags["llmops.dataset_version_id"] = pinned.id
        _view, run_operation = experiments.create_job_run(
            session=session,
            runtime=runtime,
            job_id=job.id,
            experiment=experiment,
            params={},
            tags={k: v for k, v in tags.items() if v},
        )
    return job, operation, run_operation


def job_output_dir(settings: CoreSettings, job_id: str) -> Path:
    """Where a job writes what it produces; logged as its run's artifacts at the end."""
    return (settings.storage_dir / "training-jobs" / job_id / "output").resolve()


def job_pipeline(*, session: Session, job: TrainingJob) -> WorkflowPipeline | None:
    if job.pipeline_id is None:
        return None
    return session.get(WorkflowPipeline, job.pipeline_id)


def refresh_job(
    *, session: Session, runtime: IntegrationRuntime, job_id: str
) -> tuple[TrainingJob, pipelines.PipelineView | None]:
    job = get_job(session=session, job_id=job_id)
    row = job_pipeline(session=session, job=job)
    if row is None:
        return job, None
    view = pipelines.sync(session=session, runtime=runtime, row=row)
    return job, view


def list_jobs(
    *,
    session: Session,
    status: str | None = None,
    model_id: str | None = None,
    sort: str = "-createdAt",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[TrainingJob]:
    stmt: Select[tuple[TrainingJob]] = select(TrainingJob)
    if status:
        stmt = stmt.where(TrainingJob.status == status)
    if model_id:
        stmt = stmt.where(TrainingJob.model_id == model_id)
    return paginate(
        session,
        stmt,
        sort=sort,
        columns=SORTS,
        id_column=TrainingJob.id,
        limit=limit,
        cursor=cursor,
    )


def cancel_job(
    *, session: Session, runtime: IntegrationRuntime, job_id: str
) -> tuple[TrainingJob, Operation | None]:
    job = get_job(session=session, job_id=job_id)
    if job.pipeline_id is None:
        raise Conflict("the job has no pipeline to cancel")
    _, operation = pipelines.cancel_pipeline(
        session=session, runtime=runtime, pipeline_id=job.pipeline_id
    )
    return job, operation


def job_logs(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    job_id: str,
    stage: str | None = None,
    tail_bytes: int | None = None,
) -> Sequence[StageLog]:
    job = get_job(session=session, job_id=job_id)
    if job.pipeline_id is None:
        return []
    return pipelines.pipeline_logs(
        session=session,
        runtime=runtime,
        pipeline_id=job.pipeline_id,
        stage=stage,
        tail_bytes=tail_bytes,
    )


#: The label that ties a catalog model to the training job that produced it.
JOB_LABEL = "llmops.training_job_id"


def register_job_model(
    *,
    session: Session,
    settings: CoreSettings,
    job_id: str,
    name: str | None,
    version: str,
    description: str,
) -> tuple[CatalogModel, bool]:
    """Register the model a succeeded job saved with ``save_pretrained`` into
    ``LLMOPS_OUTPUT_DIR/model`` as a catalog model (its uri the folder's ``file://`` URI).

    Idempotent per job: a second call returns the model registered first (and False).

    :raises Conflict: the job has not succeeded.
    :raises InvalidRequest: the job saved no servable model (the loader's reason).
    """
    from llmops.model_runtime.loader import ModelFolderError, check_model_folder

    job = get_job(session=session, job_id=job_id)
    existing = session.scalars(
        select(CatalogModel).where(CatalogModel.labels[JOB_LABEL].as_string() == job.id)
    ).first()
    if existing is not None:
        return existing, False
    if job.status != "succeeded":
        raise Conflict(
            f"training job {job.id} is {job.status}: only a succeeded job's model can be "
            "registered",
            id=job.id,
        )
    folder = job_output_dir(settings, job.id) / "model"
    try:
        checked = check_model_folder(folder)
    except ModelFolderError as exc:
        raise InvalidRequest(
            f"training job {job.id} saved no servable model in its output's model/ folder "
            f"(save_pretrained into $LLMOPS_OUTPUT_DIR/model): {exc}",
            id=job.id,
        ) from exc
    labels = {JOB_LABEL: job.id}
    if job.dataset_id:
        labels["llmops.dataset_id"] = job.dataset_id
    model = catalog.create_model(
        session=session,
        name=name or job.name,
        version=version,
        description=description or f"Trained by training job {job.name} ({job.id}).",
        task="text-generation",
        framework="transformers",
        source="training-job",
        uri=checked.path.as_uri(),
        tags=["trained"],
        labels=labels,
    )
    return model, True
