"""Workflow pipelines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from llmops.api.deps import Cursor, Limit, PlatformDep, RuntimeDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.routers.views import pipeline_out, written
from llmops.api.schemas import ListPage, LogsOut, PipelineCreate, PipelineOut, StageLogOut
from llmops.capabilities.orchestration import PipelineSpec
from llmops.db.models import Operation
from llmops.integrations import IntegrationRuntime
from llmops.platform import Platform
from llmops.services import pipelines
from llmops.services.pipelines import PipelineView
from llmops.services.writes import commit_and_deliver

router = APIRouter(
    route_class=AnswerKeepingRoute, prefix="/workflows/pipelines", tags=["workflows"]
)


@router.post(
    "",
    status_code=201,
    response_model=PipelineOut,
    summary="Submit a pipeline",
    responses={202: {"model": PipelineOut, "description": "Accepted: waits in the retry queue"}},
)
def create_pipeline(
    body: PipelineCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> PipelineOut:
    """Validate the DAG (unknown dependency, cycle, duplicate name → 422 naming the stages)
    and start it on the chosen orchestrator, or the default one. When the orchestrator is
    down the submission waits in the retry queue: 202 with the operation to poll; with
    ``fallback: "local"`` it runs on the local executor instead, where that cannot run
    it twice: 201, degraded, with why."""
    spec = PipelineSpec(
        name=body.name,
        stages=[s.to_spec() for s in body.stages],
        max_parallel=body.max_parallel,
        labels=body.labels,
    )
    row, operation = pipelines.submit_pipeline(
        session=session,
        runtime=runtime,
        spec=spec,
        provider=body.provider,
        fallback=body.fallback,
        inputs=[(i.dataset_id, i.version) for i in body.inputs],
    )
    result = commit_and_deliver(
        session=session,
        outbox=platform.outbox,
        runtime=runtime,
        operation=operation,
        has_fallback=body.fallback is not None,
    )
    view = PipelineView(row)
    return written(pipeline_out(view), result, response, view)


@router.get("", response_model=ListPage[PipelineOut], summary="List pipelines")
def list_pipelines(
    session: SessionDep,
    status: Annotated[
        str | None, Query(pattern=r"^(pending|running|succeeded|failed|cancelled)$")
    ] = None,
    provider: Annotated[str | None, Query(max_length=80)] = None,
    sort: Annotated[str, Query(pattern=r"^-?(name|createdAt)$")] = "-createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[PipelineOut]:
    page = pipelines.list_pipelines(
        session=session, status=status, provider=provider, sort=sort, limit=limit, cursor=cursor
    )
    return ListPage[PipelineOut](
        items=[pipeline_out(PipelineView(r)) for r in page.items], next_cursor=page.next_cursor
    )


@router.get("/{pipelineId}", response_model=PipelineOut, summary="Get a pipeline with stage states")
def get_pipeline(pipelineId: str, session: SessionDep, runtime: RuntimeDep) -> PipelineOut:
    return pipeline_out(
        pipelines.get_pipeline(session=session, runtime=runtime, pipeline_id=pipelineId)
    )


@router.delete(
    "/{pipelineId}", status_code=204, response_class=Response, summary="Delete a pipeline"
)
def delete_pipeline(pipelineId: str, session: SessionDep, runtime: RuntimeDep) -> Response:
    """Cancels the run first when it is still active."""
    pipelines.delete_pipeline(session=session, runtime=runtime, pipeline_id=pipelineId)
    return Response(status_code=204)


def _deliver(
    view: PipelineView,
    operation: Operation,
    session: Session,
    runtime: IntegrationRuntime,
    platform: Platform,
    response: Response,
) -> PipelineOut:
    """Commit a queued action on a pipeline, try it at once, and answer 200 or 202."""
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    return written(pipeline_out(PipelineView(view.row)), result, response)


@router.post(
    "/{pipelineId}/cancel",
    response_model=PipelineOut,
    summary="Cancel a pipeline",
    responses={
        202: {
            "model": PipelineOut,
            "description": "Accepted: cancelling (its executor carries it out), or waiting "
            "in the retry queue",
        }
    },
)
def cancel_pipeline(
    pipelineId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> PipelineOut:
    """The cancel is recorded and carried out by the process that drives the run (any
    replica may take the request): 202 with status ``cancelling`` until it is done."""
    view, operation = pipelines.cancel_pipeline(
        session=session, runtime=runtime, pipeline_id=pipelineId
    )
    if operation is None:
        if view.row.status == pipelines.CANCELLING:
            session.commit()  # the run's owner acts on what is committed
            runtime.wake_runs()
            response.status_code = 202
        return pipeline_out(view)
    answer = _deliver(view, operation, session, runtime, platform, response)
    if answer.status == pipelines.CANCELLING:  # the tool was told; it has not stopped yet
        response.status_code = 202
    return answer


@router.post(
    "/{pipelineId}/retry",
    response_model=PipelineOut,
    summary="Retry the failed stages",
    responses={202: {"model": PipelineOut, "description": "Accepted: waits in the retry queue"}},
)
def retry_pipeline(
    pipelineId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> PipelineOut:
    view, operation = pipelines.retry_pipeline(
        session=session, runtime=runtime, pipeline_id=pipelineId
    )
    return _deliver(view, operation, session, runtime, platform, response)


@router.get("/{pipelineId}/logs", response_model=LogsOut, summary="Stage logs")
def get_pipeline_logs(
    pipelineId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    stage: Annotated[str | None, Query(max_length=63)] = None,
    tail_bytes: Annotated[int | None, Query(alias="tailBytes", ge=1, le=10_000_000)] = None,
) -> LogsOut:
    """Each stage's output. Readable by every key (viewer and above), so a stage's output
    is scrubbed of the secret values the platform knows (a job's token, the stage's
    secret environment, every integration secret, the key that encrypts them) before it
    is stored and again before it is served; do not print other secrets from a stage."""
    logs = pipelines.pipeline_logs(
        session=session,
        runtime=runtime,
        pipeline_id=pipelineId,
        stage=stage,
        tail_bytes=tail_bytes,
    )
    return LogsOut(items=[StageLogOut.model_validate(entry) for entry in logs])
