"""Turning service results into response bodies, shared by several routers."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Response

from llmops.api.schemas import (
    Degradable,
    PipelineInputOut,
    PipelineOut,
    PipelineSpecOut,
    StageOut,
    TrainingJobOut,
)
from llmops.db.models import TrainingJob
from llmops.services.pipelines import (
    PipelineView,
    fallback_note,
    fell_back_from,
    pipeline_inputs,
)
from llmops.services.writes import WriteResult

T = TypeVar("T", bound=Degradable)


def pipeline_out(view: PipelineView) -> PipelineOut:
    row = view.row
    return PipelineOut(
        id=row.id,
        name=row.name,
        provider=row.provider,
        external_id=row.external_id,
        status=row.status,
        stages=[StageOut.model_validate(s) for s in row.stages],
        message=row.message,
        ui_url=row.ui_url,
        training_job_id=row.training_job_id,
        spec=PipelineSpecOut.model_validate(
            {k: v for k, v in row.spec.items() if k in PipelineSpecOut.model_fields}
        ),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        synced_at=row.synced_at,
        fell_back_from=fell_back_from(row),
        inputs=[PipelineInputOut.model_validate(i) for i in pipeline_inputs(row)],
        degraded=view.stale,
        degraded_reason=(f"showing the last known state: {view.reason}" if view.stale else None),
    )


def job_out(
    job: TrainingJob, view: PipelineView | None, output_model_ids: list[str] | None = None
) -> TrainingJobOut:
    stages = [StageOut.model_validate(s) for s in view.row.stages] if view else []
    stale = bool(view and view.stale)
    return TrainingJobOut(
        id=job.id,
        name=job.name,
        model_id=job.model_id,
        dataset_id=job.dataset_id,
        dataset_version_id=job.dataset_version_id,
        output_model_ids=list(output_model_ids or []),
        status=job.status,
        message=job.message,
        hyperparameters=job.hyperparameters,
        pipeline_id=job.pipeline_id,
        experiment_run_id=job.experiment_run.id if job.experiment_run is not None else None,
        stages=stages,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        synced_at=view.row.synced_at if view else None,
        fell_back_from=fell_back_from(view.row) if view else None,
        degraded=stale,
        degraded_reason=(
            f"showing the last known state: {view.reason}" if view and view.stale else None
        ),
    )


def written(
    body: T, result: WriteResult, response: Response, view: PipelineView | None = None
) -> T:
    """A write's answer: 201 with the tool's state, or 202 while it waits in the outbox.
    A submission that fell back to the local executor (``view``'s pipeline) is answered
    201, degraded, with why."""
    if result.delivered:
        note = fallback_note(view.row) if view is not None else None
        if note is None:
            return body
        return body.model_copy(update={"degraded": True, "degraded_reason": note})
    response.status_code = 202
    response.headers["Location"] = f"/llm-ops/v1/operations/{result.operation_id}"
    return body.model_copy(
        update={
            "degraded": True,
            "degraded_reason": result.reason,
            "operation_id": result.operation_id,
        }
    )
