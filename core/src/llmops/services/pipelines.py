"""Workflow pipelines, run through the orchestration capability.

The tool (the local executor, Argo) is the source of truth for a run's state; the
``workflow_pipelines`` row keeps the last state the platform saw, which reads fall back
to (marked stale) when the provider cannot be reached.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.orchestration import (
    OrchestrationProvider,
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageLog,
    validate_pipeline,
)
from llmops.db.models import Operation, TrainingJob, WorkflowPipeline, utcnow
from llmops.errors import Conflict, LlmopsError, NotFound
from llmops.integrations import IntegrationRuntime, secret_fields
from llmops.redaction import Redactor
from llmops.resilience.outbox import Delivery, OperationStatus, OutboxPolicy, enqueue, requeue
from llmops.services.api_keys import revoke_job_tokens
from llmops.services.experiments import finish_job_run, job_run_environment
from llmops.services.jobs import job_secret_env
from llmops.services.pagination import Page, paginate

log = logging.getLogger(__name__)

TERMINAL = {s.value for s in PipelineState if s.terminal}
SORTS = {"createdAt": WorkflowPipeline.created_at, "name": WorkflowPipeline.name}


@dataclass(frozen=True)
class PipelineView:
    row: WorkflowPipeline
    stale: bool = False
    reason: str | None = None


SUBMIT = "pipeline.submit"
CANCEL = "pipeline.cancel"
RETRY = "pipeline.retry"


def submit_pipeline(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    spec: PipelineSpec,
    provider: str | None = None,
    training_job_id: str | None = None,
) -> tuple[WorkflowPipeline, Operation]:
    """Record the pipeline and its submission in the outbox (the caller commits, then
    delivers: see :mod:`llmops.services.writes`)."""
    validate_pipeline(spec)
    provider_name, _ = runtime.orchestration_provider(provider)
    row = WorkflowPipeline(
        name=spec.name,
        provider=provider_name,
        spec=spec.model_dump(mode="json", exclude={"secret_env"}),
        status=PipelineState.PENDING.value,
        training_job_id=training_job_id,
        stages=[{"name": s.name, "state": "pending", "attempts": 0} for s in spec.stages],
        message="waiting to be submitted",
    )
    session.add(row)
    session.flush()
    operation = enqueue(
        session,
        kind=SUBMIT,
        provider=provider_name,
        capability=Capability.ORCHESTRATION.value,
        idempotency_key=f"pipeline-{row.id}",
        payload={"pipelineId": row.id},
        resource_type="pipeline",
        resource_id=row.id,
    )
    return row, operation


def deliver_submit(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    """The outbox handler of :data:`SUBMIT`: hand the pipeline to its orchestrator."""
    session = delivery.session
    row = session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.status == PipelineState.CANCELLED.value:
        return {"skipped": "the pipeline was deleted or cancelled before it was submitted"}
    spec = PipelineSpec.model_validate(
        {**row.spec, "idempotency_key": delivery.operation.idempotency_key}
    )
    if row.training_job_id is not None:
        # the job's token first: the tracker's variables may hand it on (JobAccess)
        job_secrets = job_secret_env(session=session, job_id=row.training_job_id)
        tracking_env, tracking_secrets = job_run_environment(
            session=session,
            runtime=runtime,
            job_id=row.training_job_id,
            job_token=job_secrets["LLMOPS_JOB_TOKEN"],
        )
        spec = spec.model_copy(
            update={
                "stages": [
                    s.model_copy(update={"env": {**tracking_env, **s.env}}) for s in spec.stages
                ],
                "secret_env": {**tracking_secrets, **job_secrets},
            }
        )
    _, orchestrator = runtime.orchestration_provider(row.provider)
    status = orchestrator.submit(spec)
    apply_status(row, status)
    _propagate_to_job(session=session, row=row)
    return {"externalId": status.external_id}


def submit_dead(delivery: Delivery, reason: str) -> None:
    """The submission will not happen: the pipeline says so."""
    row = delivery.session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.status in TERMINAL:
        return
    row.status = PipelineState.FAILED.value
    row.message = f"could not be submitted to {row.provider}: {reason}"
    row.finished_at = utcnow()
    _propagate_to_job(session=delivery.session, row=row)


def apply_status(row: WorkflowPipeline, status: PipelineStatus) -> None:
    row.external_id = status.external_id
    row.status = status.state.value
    row.stages = [s.model_dump(mode="json") for s in status.stages]
    row.message = status.message
    row.ui_url = status.ui_url
    row.started_at = status.started_at
    row.finished_at = status.finished_at
    row.synced_at = utcnow()


def get_row(*, session: Session, pipeline_id: str) -> WorkflowPipeline:
    row = session.get(WorkflowPipeline, pipeline_id)
    if row is None:
        raise NotFound(f"no pipeline with id {pipeline_id!r}", resource="pipeline", id=pipeline_id)
    return row


def _orchestrator(runtime: IntegrationRuntime, row: WorkflowPipeline) -> OrchestrationProvider:
    _, orchestrator = runtime.orchestration_provider(row.provider)
    return orchestrator


def sync(*, session: Session, runtime: IntegrationRuntime, row: WorkflowPipeline) -> PipelineView:
    """Refresh a non-terminal row from its provider; fall back to the stored state."""
    if row.status in TERMINAL or row.external_id is None:
        return PipelineView(row)
    try:
        status = _orchestrator(runtime, row).status(row.external_id)
    except LlmopsError as exc:
        return PipelineView(row, stale=True, reason=exc.detail)
    apply_status(row, status)
    _propagate_to_job(session=session, row=row)
    session.flush()
    return PipelineView(row)


def _propagate_to_job(*, session: Session, row: WorkflowPipeline) -> None:
    if row.training_job_id is None:
        return
    # rows are always written in one order (pipeline, job, its tokens), whichever path
    # syncs them, so a request and the worker never wait on each other in a cycle
    session.flush()
    job = session.get(TrainingJob, row.training_job_id)
    if job is None:
        return
    ended = row.status in TERMINAL and job.status != row.status
    job.status = row.status
    job.message = row.message
    job.started_at = row.started_at
    job.finished_at = row.finished_at
    if row.status in TERMINAL:
        revoke_job_tokens(session=session, training_job_id=job.id)
    if ended:
        finish_job_run(session=session, job=job)


def get_pipeline(
    *, session: Session, runtime: IntegrationRuntime, pipeline_id: str
) -> PipelineView:
    return sync(
        session=session, runtime=runtime, row=get_row(session=session, pipeline_id=pipeline_id)
    )


def list_pipelines(
    *,
    session: Session,
    status: str | None = None,
    provider: str | None = None,
    sort: str = "-createdAt",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[WorkflowPipeline]:
    stmt: Select[tuple[WorkflowPipeline]] = select(WorkflowPipeline)
    if status:
        stmt = stmt.where(WorkflowPipeline.status == status)
    if provider:
        stmt = stmt.where(WorkflowPipeline.provider == provider)
    return paginate(
        session,
        stmt,
        sort=sort,
        columns=SORTS,
        id_column=WorkflowPipeline.id,
        limit=limit,
        cursor=cursor,
    )


def cancel_pipeline(
    *, session: Session, runtime: IntegrationRuntime, pipeline_id: str
) -> tuple[PipelineView, Operation | None]:
    """Cancel through the outbox; a pipeline that never reached its tool is simply
    cancelled here, its pending submission discarded."""
    row = get_row(session=session, pipeline_id=pipeline_id)
    if row.status in TERMINAL:
        raise Conflict(f"pipeline {pipeline_id!r} has already {row.status}")
    if row.external_id is None:
        row.status = PipelineState.CANCELLED.value
        row.message = "cancelled before it was submitted"
        row.finished_at = utcnow()
        _propagate_to_job(session=session, row=row)
        pending = session.scalars(
            select(Operation).where(
                Operation.resource_id == row.id,
                Operation.kind == SUBMIT,
                Operation.status == OperationStatus.PENDING.value,
            )
        )
        for operation in pending:
            operation.status = OperationStatus.DISCARDED.value
            operation.last_error = "the pipeline was cancelled before it was submitted"
        session.flush()
        return PipelineView(row), None
    return PipelineView(row), _enqueue_action(session, row, CANCEL)


def _enqueue_action(session: Session, row: WorkflowPipeline, kind: str) -> Operation:
    """Queue ``kind`` (cancel, retry) for a pipeline its orchestrator already runs; each
    request is its own action, so the key is fresh."""
    return enqueue(
        session,
        kind=kind,
        provider=row.provider,
        capability=Capability.ORCHESTRATION.value,
        idempotency_key=f"pipeline-{row.id}-{kind.rsplit('.', 1)[-1]}-{uuid.uuid4().hex}",
        payload={"pipelineId": row.id},
        resource_type="pipeline",
        resource_id=row.id,
    )


def deliver_cancel(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    """The outbox handler of :data:`CANCEL`."""
    row = delivery.session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.external_id is None or row.status in TERMINAL:
        return {"skipped": "nothing left to cancel"}
    apply_status(row, _orchestrator(runtime, row).cancel(row.external_id))
    _propagate_to_job(session=delivery.session, row=row)
    return None


def retry_pipeline(
    *, session: Session, runtime: IntegrationRuntime, pipeline_id: str
) -> tuple[PipelineView, Operation]:
    """Run the failed stages again, through the outbox. A pipeline whose submission was
    given up on is submitted again, under its first idempotency key."""
    row = get_row(session=session, pipeline_id=pipeline_id)
    if row.status not in {PipelineState.FAILED.value, PipelineState.CANCELLED.value}:
        raise Conflict(
            f"only failed or cancelled pipelines can be retried; this one is {row.status}"
        )
    runtime.orchestration_provider(row.provider)  # 409 when its plugin is off
    if row.external_id is None:
        submission = session.scalars(
            select(Operation).where(Operation.resource_id == row.id, Operation.kind == SUBMIT)
        ).first()
        if submission is None or submission.status not in {
            OperationStatus.DEAD.value,
            OperationStatus.DISCARDED.value,
        }:
            raise Conflict("the pipeline's submission is still waiting in the retry queue")
        requeue(
            submission,
            now=utcnow(),
            attempts=submission.max_attempts,
            grace=OutboxPolicy().first_delivery_grace,  # the retry request delivers it
        )
        row.status = PipelineState.PENDING.value
        row.message = "waiting to be submitted again"
        row.finished_at = None
        _propagate_to_job(session=session, row=row)
        session.flush()
        return PipelineView(row), submission
    return PipelineView(row), _enqueue_action(session, row, RETRY)


def deliver_retry(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    """The outbox handler of :data:`RETRY`."""
    row = delivery.session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.external_id is None:
        return {"skipped": "nothing to retry"}
    apply_status(row, _orchestrator(runtime, row).retry(row.external_id))
    _propagate_to_job(session=delivery.session, row=row)
    return None


def pipeline_logs(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    pipeline_id: str,
    stage: str | None = None,
    tail_bytes: int | None = None,
) -> Sequence[StageLog]:
    row = get_row(session=session, pipeline_id=pipeline_id)
    if stage is not None and stage not in {s["name"] for s in row.spec.get("stages", [])}:
        raise NotFound(f"pipeline {pipeline_id!r} has no stage {stage!r}")
    if row.external_id is None:
        return []
    logs = _orchestrator(runtime, row).logs(row.external_id, stage=stage, tail_bytes=tail_bytes)
    redactor = Redactor(known_secrets(runtime))
    return [log.model_copy(update={"text": redactor.redact(log.text)}) for log in logs]


def known_secrets(runtime: IntegrationRuntime) -> list[str]:
    """Every secret value the platform holds in clear: each plugin's secret settings
    (stored or from the environment) and the key that encrypts them. A log is scrubbed of
    them before it is served, whichever orchestrator wrote it."""
    values: list[str] = []
    for state in runtime.states():
        if state.settings is None:
            continue
        for name in secret_fields(type(state.settings)):
            value = getattr(state.settings, name, None)
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
    core = runtime.settings
    if core.secret_key is not None:
        values += [v.strip() for v in core.secret_key.get_secret_value().split(",")]
    key_file = runtime.secrets.key_file
    if key_file is not None:
        with contextlib.suppress(OSError):
            values += key_file.read_text().split()
    return [v for v in values if v]


def delete_pipeline(*, session: Session, runtime: IntegrationRuntime, pipeline_id: str) -> None:
    """Delete the record; a run still active is cancelled first."""
    row = get_row(session=session, pipeline_id=pipeline_id)
    if row.training_job_id is not None:
        raise Conflict("this pipeline runs a training job: cancel the job instead")
    if row.status not in TERMINAL and row.external_id is not None:
        _orchestrator(runtime, row).cancel(row.external_id)
    session.delete(row)
    session.flush()


def sync_active(*, session: Session, runtime: IntegrationRuntime) -> int:
    """Refresh every non-terminal pipeline (the background worker calls this), one
    transaction each, so no lock is held while another pipeline's tool is asked."""
    ids = list(
        session.scalars(select(WorkflowPipeline.id).where(WorkflowPipeline.status.not_in(TERMINAL)))
    )
    session.commit()
    for pipeline_id in ids:
        row = session.get(WorkflowPipeline, pipeline_id)
        if row is not None:
            sync(session=session, runtime=runtime, row=row)
        session.commit()
    return len(ids)
