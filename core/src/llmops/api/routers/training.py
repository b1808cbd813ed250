"""Training jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from llmops.api.deps import Cursor, Limit, PlatformDep, RuntimeDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.routers.views import job_out, written
from llmops.api.schemas import (
    JobModelRegister,
    ListPage,
    LogsOut,
    ModelOut,
    StageLogOut,
    TrainingJobCreate,
    TrainingJobOut,
)
from llmops.capabilities.orchestration import StageSpec
from llmops.db.models import WorkflowPipeline
from llmops.errors import InvalidRequest
from llmops.resilience.outbox import OutcomeKind
from llmops.services import lineage, pipelines, training
from llmops.services.writes import WriteResult, commit_and_deliver

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/training/jobs", tags=["training"])


@router.post(
    "",
    status_code=201,
    response_model=TrainingJobOut,
    summary="Submit a training job",
    responses={202: {"model": TrainingJobOut, "description": "Accepted: waits in the retry queue"}},
)
def submit_training_job(
    body: TrainingJobCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> TrainingJobOut:
    """A job is a pipeline: give ``command`` for one stage named ``train``, or ``stages``."""
    if (body.command is None) == (body.stages is None):
        raise InvalidRequest("give exactly one of command or stages", parameter="command")
    if body.command is not None:
        stages = [
            StageSpec(
                name="train",
                command=body.command,
                env=body.env,
                retries=body.retries,
                timeout_seconds=body.timeout_seconds,
            )
        ]
    else:
        if body.stages is None:  # the request model requires command or stages
            raise InvalidRequest("give a command or stages", parameter="stages")
        stages = [
            s.to_spec().model_copy(update={"env": {**body.env, **s.env}}) for s in body.stages
        ]
    job, operation, run_operation = training.submit_job(
        session=session,
        runtime=runtime,
        settings=platform.settings,
        name=body.name,
        stages=stages,
        model_id=body.model_id,
        dataset_id=body.dataset_id,
        hyperparameters=body.hyperparameters,
        provider=body.provider,
        track=body.track,
        experiment=body.experiment,
        fallback=body.fallback,
    )
    job_id = job.id
    if run_operation is not None:  # the run first: the job's environment names it
        session.commit()
        outcome = platform.outbox.deliver_now(run_operation.id)
        session.expire_all()
        if outcome.kind in {OutcomeKind.RETRY_LATER, OutcomeKind.NOT_CLAIMED}:
            # the job would only wait for its run: both stay queued, nothing is lost
            why = outcome.error.detail if outcome.error is not None else "being created"
            result = WriteResult(
                operation.id, False, f"queued: waiting for its experiment run ({why})"
            )
            job, view = training.refresh_job(session=session, runtime=runtime, job_id=job_id)
            return written(job_out(job, view), result, response)
    result = commit_and_deliver(
        session=session,
        outbox=platform.outbox,
        runtime=runtime,
        operation=operation,
        has_fallback=body.fallback is not None,
    )
    job, view = training.refresh_job(session=session, runtime=runtime, job_id=job_id)
    return written(job_out(job, view), result, response, view)


@router.get("", response_model=ListPage[TrainingJobOut], summary="List training jobs")
def list_training_jobs(
    session: SessionDep,
    status: Annotated[
        str | None, Query(pattern=r"^(pending|running|succeeded|failed|cancelled)$")
    ] = None,
    model_id: Annotated[str | None, Query(alias="modelId", max_length=32)] = None,
    sort: Annotated[str, Query(pattern=r"^-?(name|createdAt)$")] = "-createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[TrainingJobOut]:
    page = training.list_jobs(
        session=session, status=status, model_id=model_id, sort=sort, limit=limit, cursor=cursor
    )
    return ListPage[TrainingJobOut](
        items=[job_out(j, None) for j in page.items], next_cursor=page.next_cursor
    )


@router.get("/{jobId}", response_model=TrainingJobOut, summary="Get a training job")
def get_training_job(jobId: str, session: SessionDep, runtime: RuntimeDep) -> TrainingJobOut:
    job, view = training.refresh_job(session=session, runtime=runtime, job_id=jobId)
    produced = [m.id for m in lineage.produced_models(session, job.id)]
    return job_out(job, view, produced)


@router.post(
    "/{jobId}/cancel",
    response_model=TrainingJobOut,
    summary="Cancel a training job",
    responses={
        202: {
            "model": TrainingJobOut,
            "description": "Accepted: cancelling (its executor carries it out), or waiting "
            "in the retry queue",
        }
    },
)
def cancel_training_job(
    jobId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> TrainingJobOut:
    """Cancels the job's pipeline: 202 with status ``cancelling`` until the process that
    drives it has stopped it."""
    job, operation = training.cancel_job(session=session, runtime=runtime, job_id=jobId)
    if operation is None:
        if job.status == pipelines.CANCELLING:
            session.commit()  # the run's owner acts on what is committed
            runtime.wake_runs()
            response.status_code = 202
        row = session.get(WorkflowPipeline, job.pipeline_id) if job.pipeline_id else None
        return job_out(job, pipelines.PipelineView(row) if row is not None else None)
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    job, view = training.refresh_job(session=session, runtime=runtime, job_id=jobId)
    answer = written(job_out(job, view), result, response)
    if answer.status == pipelines.CANCELLING:  # the tool was told; it has not stopped yet
        response.status_code = 202
    return answer


@router.post(
    "/{jobId}/model",
    status_code=201,
    response_model=ModelOut,
    summary="Register the model a training job produced",
    responses={200: {"model": ModelOut, "description": "Already registered: that model"}},
)
def register_training_job_model(
    jobId: str,
    session: SessionDep,
    platform: PlatformDep,
    response: Response,
    body: JobModelRegister | None = None,
) -> ModelOut:
    """The model a succeeded job saved with ``save_pretrained`` into
    ``$LLMOPS_OUTPUT_DIR/model`` becomes a catalog model (safetensors only, no custom
    code), ready to deploy. Once per job: again, it answers 200 with that model."""
    body = body or JobModelRegister()
    model, created = training.register_job_model(
        session=session,
        settings=platform.settings,
        job_id=jobId,
        name=body.name,
        version=body.version,
        description=body.description,
    )
    if not created:
        response.status_code = 200
    return ModelOut.model_validate(model)


@router.get("/{jobId}/logs", response_model=LogsOut, summary="A training job's logs")
def get_training_job_logs(
    jobId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    stage: Annotated[str | None, Query(max_length=63)] = None,
    tail_bytes: Annotated[int | None, Query(alias="tailBytes", ge=1, le=10_000_000)] = None,
) -> LogsOut:
    """The job's output. Readable by every key (viewer and above) and by the job's own
    token; scrubbed of the secret values the platform knows before it is stored and again
    before it is served, as a pipeline's logs are."""
    logs = training.job_logs(
        session=session, runtime=runtime, job_id=jobId, stage=stage, tail_bytes=tail_bytes
    )
    return LogsOut(items=[StageLogOut.model_validate(entry) for entry in logs])
