"""Experiment runs of training jobs and experiment search (the tracking capability)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from llmops.api.deps import PlatformDep, RuntimeDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.routers.views import written
from llmops.api.schemas import (
    ComparedRunOut,
    CompareIn,
    CompareOut,
    ExperimentRunCreate,
    ExperimentRunOut,
    ExperimentSearchIn,
    ExperimentSearchOut,
    MetricPointOut,
    MetricsAccepted,
    MetricsIn,
    ParamRowOut,
    RunSummaryOut,
    ToolRequestBody,
)
from llmops.capabilities.common import utcnow
from llmops.capabilities.tracking import MetricPoint, RunQuery, TrackerRequest
from llmops.db.models import Operation
from llmops.services import experiments
from llmops.services.experiments import RunView
from llmops.services.writes import commit_and_deliver

router = APIRouter(route_class=AnswerKeepingRoute, tags=["experiments"])


def run_out(view: RunView) -> ExperimentRunOut:
    out = ExperimentRunOut.model_validate(view.row)
    return out.model_copy(
        update={
            "stale": view.stale,
            "degraded": view.stale,
            "degraded_reason": f"showing the last known state: {view.reason}"
            if view.stale
            else None,
        }
    )


@router.get(
    "/training/jobs/{jobId}/experiment-run",
    response_model=ExperimentRunOut,
    summary="The experiment run of a training job",
)
def get_experiment_run(jobId: str, session: SessionDep, runtime: RuntimeDep) -> ExperimentRunOut:
    return run_out(experiments.get_job_run(session=session, runtime=runtime, job_id=jobId))


@router.post(
    "/training/jobs/{jobId}/experiment-run",
    status_code=201,
    response_model=ExperimentRunOut,
    summary="Create the experiment run of a training job",
    responses={
        200: {"model": ExperimentRunOut, "description": "The job already has a run"},
        202: {"model": ExperimentRunOut, "description": "Accepted: waits in the retry queue"},
    },
)
def create_experiment_run(
    jobId: str,
    body: ExperimentRunCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> ExperimentRunOut:
    view, operation = experiments.create_job_run(
        session=session,
        runtime=runtime,
        job_id=jobId,
        experiment=body.experiment,
        params=body.params,
        tags=body.tags,
    )
    if operation is None:
        response.status_code = 200
        return run_out(view)
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    return written(run_out(RunView(view.row)), result, response)


@router.post(
    "/training/jobs/{jobId}/experiment-run/metrics",
    response_model=MetricsAccepted,
    summary="Log metric points to a training job's run",
    responses={202: {"model": MetricsAccepted, "description": "Acknowledged, not yet sent"}},
)
def log_experiment_metrics(
    jobId: str,
    body: MetricsIn,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> MetricsAccepted:
    """The points are stored durably before the answer; they reach the tracker in its
    batch size, at once or, while it is away, from the retry queue (202)."""
    now = utcnow()
    points = [
        MetricPoint(key=m.key, value=m.value, step=m.step, timestamp=m.timestamp or now)
        for m in body.metrics
    ]
    operation = experiments.log_job_metrics(
        session=session, runtime=runtime, job_id=jobId, metrics=points
    )
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    delivered = session.get(Operation, result.operation_id) if result.delivered else None
    batches = int((delivered.result or {}).get("batches", 0)) if delivered else 0
    return written(MetricsAccepted(accepted=len(points), batches=batches), result, response)


#: The tracker proxy of a job's process (``JobAccess.tracker_url``): its tool's own client
#: speaks the tool's own API below it, with the job's token.
TRACKER_PROXY = "/training/jobs/{jobId}/experiment-run/tracker/{path:path}"
TRACKER_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The tracker's answer, in the tool's own JSON; the tool's own errors "
        "(another run, an endpoint not offered) keep the tool's status and shape",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _tracker_answer(
    session: SessionDep, runtime: RuntimeDep, job_id: str, request: TrackerRequest
) -> JSONResponse:
    answer = experiments.job_tracker_request(
        session=session, runtime=runtime, job_id=job_id, request=request
    )
    return JSONResponse(status_code=answer.status, content=answer.body)


@router.get(
    TRACKER_PROXY,
    response_model=None,
    summary="Read a training job's run with the tracking tool's own client",
    responses=TRACKER_ANSWERS,
)
def read_job_tracker(
    jobId: str, path: str, request: Request, session: SessionDep, runtime: RuntimeDep
) -> JSONResponse:
    """For the job's own process (its token) and admins only. The tracker serves what
    concerns the job's run, with its own credentials, which never reach the job."""
    query: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        query.setdefault(name, []).append(value)
    return _tracker_answer(
        session, runtime, jobId, TrackerRequest(method="GET", path=path, query=query)
    )


@router.post(
    TRACKER_PROXY,
    response_model=None,
    summary="Write to a training job's run with the tracking tool's own client",
    responses=TRACKER_ANSWERS,
)
def write_job_tracker(
    jobId: str,
    path: str,
    session: SessionDep,
    runtime: RuntimeDep,
    body: Annotated[ToolRequestBody | None, Body()] = None,
) -> JSONResponse:
    """For the job's own process (its token) and admins only: params, metrics, tags and
    the status of the job's run, in the tool's own API (not audited: telemetry, like the
    metrics route). Artifacts are not proxied: the job's LLMOPS_OUTPUT_DIR becomes the
    run's artifacts when it ends."""
    return _tracker_answer(
        session, runtime, jobId, TrackerRequest(method="POST", path=path, body=body)
    )


@router.post(
    "/experiments/search", response_model=ExperimentSearchOut, summary="Search experiment runs"
)
def search_experiments(body: ExperimentSearchIn, runtime: RuntimeDep) -> ExperimentSearchOut:
    query = RunQuery(
        experiments=body.experiments,
        filter=body.filter,
        order_by=body.order_by,
        page_size=body.page_size,
        page_token=body.page_token,
    )
    page = experiments.search_runs(runtime=runtime, query=query, provider=body.provider)
    return ExperimentSearchOut(
        runs=[RunSummaryOut.model_validate(r.model_dump()) for r in page.runs],
        next_page_token=page.next_page_token,
    )


@router.post(
    "/experiments/compare",
    response_model=CompareOut,
    summary="Compare runs: metric histories and params side by side",
)
def compare_experiments(body: CompareIn, runtime: RuntimeDep) -> CompareOut:
    result = experiments.compare_runs(
        runtime=runtime, run_ids=body.run_ids, metrics=body.metrics, provider=body.provider
    )
    return CompareOut(
        runs=[
            ComparedRunOut.model_validate(
                {
                    **run.model_dump(),
                    "metrics": {
                        key: [
                            MetricPointOut(step=p.step, value=p.value, timestamp=p.timestamp)
                            for p in points
                        ]
                        for key, points in result.histories[run.run_id].items()
                    },
                }
            )
            for run in result.runs
        ],
        metric_keys=result.metric_keys,
        params=[
            ParamRowOut(key=key, values=values, differs=differs)
            for key, values, differs in result.params
        ],
    )
