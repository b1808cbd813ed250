"""Workflow pipelines, run through the orchestration capability.

The tool (the local executor, Argo) is the source of truth for a run's state; the
``workflow_pipelines`` row keeps the last state the platform saw, which reads fall back
to (marked stale) when the provider cannot be reached.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session

from llmops.auth import Principal
from llmops.capabilities.common import Capability
from llmops.capabilities.orchestration import (
    PIPELINE_ID_LABEL,
    AdoptsRuns,
    OrchestrationProvider,
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageLog,
    StageState,
    validate_pipeline,
)
from llmops.db.models import (
    DatasetVersion,
    Operation,
    PipelineInput,
    TrainingJob,
    WorkflowPipeline,
    utcnow,
)
from llmops.errors import (
    Conflict,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NoProviderEnabled,
    NotFound,
)
from llmops.integrations import IntegrationRuntime, secret_fields
from llmops.observability.metrics import (
    FellBack,
    Finished,
    Retried,
    Submitted,
    record_pipeline_event,
)
from llmops.redaction import Redactor
from llmops.resilience.outbox import (
    ON_BEHALF_OF,
    Delivery,
    OperationStatus,
    OutboxPolicy,
    enqueue,
    requeue,
)
from llmops.secrets import SecretKeyError
from llmops.services import audit, catalog, dataset_versions, run_leases
from llmops.services.api_keys import Role, revoke_job_tokens
from llmops.services.experiments import finish_job_run, job_run_environment
from llmops.services.jobs import job_secret_env
from llmops.services.pagination import Page, paginate

log = logging.getLogger(__name__)

TERMINAL = {s.value for s in PipelineState if s.terminal}
#: the states a retry sets going again
RETRYABLE = frozenset({PipelineState.FAILED.value, PipelineState.CANCELLED.value})
SORTS = {"createdAt": WorkflowPipeline.created_at, "name": WorkflowPipeline.name}


@dataclass(frozen=True)
class PipelineView:
    row: WorkflowPipeline
    stale: bool = False
    reason: str | None = None


SUBMIT = "pipeline.submit"
CANCEL = "pipeline.cancel"
#: a pipeline whose cancel was requested and not carried out yet (not a tool's state)
CANCELLING = "cancelling"
RETRY = "pipeline.retry"

#: The one orchestrator a pipeline may fall back to: the built-in local executor.
LOCAL = "local"
#: Keys of ``row.spec`` beside the spec's own fields (the provider never sees them): the
#: caller's opt-in to the fallback, and, once it was used, from where and why.
FALLBACK = "fallback"
FELL_BACK = "fellBackFrom"
#: Where a pipeline's spec keeps its pinned inputs (datasetId, versionId, number).
INPUTS = "inputs"
#: Each stage's variable naming its pipeline.
PIPELINE_ID_ENV = "LLMOPS_PIPELINE_ID"
#: How a client says it could not connect: the request was never sent.
_CONNECT_FAILURES = frozenset(
    {"ConnectError", "ConnectTimeout", "ConnectTimeoutError", "NewConnectionError"}
    | {"NameResolutionError"}
)
#: Answers with which a server turns away work it has not started.
_NOT_TAKEN = frozenset({429, 503})


def submit_pipeline(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    spec: PipelineSpec,
    provider: str | None = None,
    training_job_id: str | None = None,
    fallback: str | None = None,
    inputs: Sequence[tuple[str, str | None]] = (),
) -> tuple[WorkflowPipeline, Operation]:
    """Record the pipeline and its submission in the outbox (the caller commits, then
    delivers: see :mod:`llmops.services.writes`).

    :param fallback: ``"local"``: should the orchestrator be unavailable when the
        submission is delivered, run the pipeline on the local executor instead (see
        :func:`deliver_submit`); None: wait for the orchestrator.
    :param inputs: (dataset id, version id or number, or None for the latest) of each
        dataset the pipeline reads: pinned now, for the lineage graph.
    :raises InvalidRequest: an input names no dataset, no version of it, or a dataset
        that has no version yet.
    """
    validate_pipeline(spec)
    provider_name, _ = runtime.orchestration_provider(provider)
    pinned = _pin_inputs(session, inputs)
    stored = spec.model_dump(mode="json", exclude={"secret_env"})
    if pinned:
        stored[INPUTS] = [
            {"datasetId": v.dataset_id, "versionId": v.id, "number": v.number} for v in pinned
        ]
    if fallback is not None:
        if fallback != LOCAL:
            raise InvalidRequest(
                f"a pipeline can fall back to {LOCAL!r} only, not {fallback!r}",
                parameter="fallback",
            )
        runtime.orchestration_provider(LOCAL)  # 409 when the local executor is off
        stored[FALLBACK] = fallback
    row = WorkflowPipeline(
        name=spec.name,
        provider=provider_name,
        spec=stored,
        status=PipelineState.PENDING.value,
        training_job_id=training_job_id,
        stages=[{"name": s.name, "state": "pending", "attempts": 0} for s in spec.stages],
        message="waiting to be submitted",
    )
    session.add(row)
    session.flush()
    session.add_all(PipelineInput(pipeline_id=row.id, dataset_version_id=v.id) for v in pinned)
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


def _pin_inputs(session: Session, inputs: Sequence[tuple[str, str | None]]) -> list[DatasetVersion]:
    pinned: dict[str, DatasetVersion] = {}
    for index, (dataset_id, version) in enumerate(inputs):
        where = f"inputs[{index}]"
        try:
            if version is None:
                catalog.get_dataset(session=session, dataset_id=dataset_id)
                row = dataset_versions.latest_version(session, dataset_id)
            else:
                row = dataset_versions.get_version(
                    session=session, dataset_id=dataset_id, version_id=version
                )
        except NotFound as exc:
            raise InvalidRequest(f"{where}: {exc.detail}", parameter="inputs") from exc
        if row is None:
            raise InvalidRequest(
                f"{where}: dataset {dataset_id} has no version yet: upload a file into it or "
                "make one (POST /catalog/datasets/{datasetId}/versions) first",
                parameter="inputs",
            )
        pinned.setdefault(row.id, row)
    return list(pinned.values())


def pipeline_inputs(row: WorkflowPipeline) -> list[dict[str, Any]]:
    """The dataset versions the pipeline reads, as pinned: datasetId, versionId, number."""
    return list(row.spec.get(INPUTS) or [])


def deliver_submit(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    """The outbox handler of :data:`SUBMIT`: hand the pipeline to its orchestrator, or,
    where the pipeline allowed it and its orchestrator is unavailable, to the local
    executor (:func:`_fall_back`)."""
    session = delivery.session
    row = session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.status == PipelineState.CANCELLED.value:
        return {"skipped": "the pipeline was deleted or cancelled before it was submitted"}
    spec = PipelineSpec.model_validate(
        {
            **{k: v for k, v in row.spec.items() if k in PipelineSpec.model_fields},
            "idempotency_key": delivery.operation.idempotency_key,
        }
    )
    spec = spec.model_copy(
        update={
            "labels": {**spec.labels, PIPELINE_ID_LABEL: row.id},
            # a stage that makes a dataset version names its pipeline with it (pipelineId)
            "stages": [
                s.model_copy(update={"env": {PIPELINE_ID_ENV: row.id, **s.env}})
                for s in spec.stages
            ],
        }
    )
    if row.training_job_id is not None:
        tracking_env, secrets = _job_environment(session, runtime, row.training_job_id)
        spec = spec.model_copy(
            update={
                "stages": [
                    s.model_copy(update={"env": {**tracking_env, **s.env}}) for s in spec.stages
                ],
                "secret_env": secrets,
            }
        )
    _, orchestrator = runtime.orchestration_provider(row.provider)
    try:
        status = orchestrator.submit(spec)
    except IntegrationUnavailable as exc:
        status = _fall_back(runtime, delivery, row, spec, exc)
    unsubmitted = WorkflowPipeline.external_id.is_(None)
    owner = _owner_here(runtime, row)  # the local executor's runs are this process's
    if set_once(session, row, unsubmitted, external_id=status.external_id, owner_id=owner):
        waited = (utcnow() - row.created_at).total_seconds()
        record_pipeline_event(session, Submitted(row.provider, waited))
    apply_status(session, row, status)
    propagate_to_job(session=session, row=row)
    result: dict[str, object] = {"externalId": status.external_id}
    origin = fell_back_from(row)
    if origin is not None:
        result["fellBackFrom"] = origin
    return result


def _job_environment(
    session: Session, runtime: IntegrationRuntime, job_id: str
) -> tuple[dict[str, str], dict[str, SecretStr]]:
    """A training job's stages' tracking variables and secrets: a fresh job token first
    (the tracker's variables may hand it on: JobAccess), then the tracker's secrets."""
    job_secrets = job_secret_env(session=session, job_id=job_id)
    tracking_env, tracking_secrets = job_run_environment(
        session=session,
        runtime=runtime,
        job_id=job_id,
        job_token=job_secrets["LLMOPS_JOB_TOKEN"],
    )
    return tracking_env, {**tracking_secrets, **job_secrets}


def adopter_of(runtime: IntegrationRuntime, row: WorkflowPipeline) -> AdoptsRuns | None:
    """The row's orchestrator where it runs stages inside this process (its runs have an
    owner: :mod:`llmops.services.run_leases`), else None."""
    try:
        _, guarded = runtime.provider(Capability.ORCHESTRATION, row.provider)
    except LlmopsError:
        return None
    raw = guarded.unwrapped
    return raw if isinstance(raw, AdoptsRuns) else None


def _owner_here(runtime: IntegrationRuntime, row: WorkflowPipeline) -> str | None:
    return runtime.instance_id if adopter_of(runtime, row) is not None else None


def end_interrupted(session: Session, row: WorkflowPipeline, message: str) -> None:
    """Fail a run nobody can carry on (see :func:`run_leases.take_over`)."""
    if _move(session, row, PipelineState.FAILED.value):
        row.finished_at = utcnow()
        _count_finished(session, row)
    row.message = message
    row.stages = _stages_after(
        row.stages,
        PipelineStatus(
            external_id=row.external_id or "",
            state=PipelineState.FAILED,
            stages=[],
            message=message,
        ),
    )
    propagate_to_job(session=session, row=row)


def _fall_back(
    runtime: IntegrationRuntime,
    delivery: Delivery,
    row: WorkflowPipeline,
    spec: PipelineSpec,
    error: IntegrationUnavailable,
) -> PipelineStatus:
    """Submit to the local executor the pipeline its orchestrator could not take, when
    the pipeline allowed it; else raise ``error``, and the submission waits as usual.

    Only where the platform knows the orchestrator never received the pipeline (no call
    was made: its circuit is open; the connection failed; it answered 429 or 503), and
    only on the submission's first attempt: after a timeout the tool may have created
    the workflow, which would then run twice. Such a submission waits for its
    orchestrator, which the idempotency key keeps from starting a second run. The
    delivery is the pipeline's one submission, so nothing is delivered again later: the
    operation now names the local executor, and an audit entry says why.
    """
    if row.spec.get(FALLBACK) != LOCAL or row.provider == LOCAL:
        raise error
    why_not = _fallback_unsafe(delivery, row, error)
    local: OrchestrationProvider | None = None
    if why_not is None:
        try:
            _, local = runtime.orchestration_provider(LOCAL)
        except NoProviderEnabled as exc:
            why_not = exc.detail
    if local is None:
        raise IntegrationUnavailable(
            f"{error.detail}; not run on the local executor instead: {why_not}",
            **error.extensions,
        ) from error
    status = local.submit(spec)
    original, reason = row.provider, error.detail[:500]
    row.provider = LOCAL
    row.spec = {
        **row.spec,
        FELL_BACK: {"provider": original, "reason": reason, "at": utcnow().isoformat()},
    }
    delivery.operation.provider = LOCAL
    who, request_id = _on_behalf_of(delivery)
    audit.record(
        session=delivery.session,
        action="pipeline.fallback",
        resource_type="pipeline",
        resource_id=row.id,
        details={
            "from": original,
            "to": LOCAL,
            "reason": reason,
            "operationId": delivery.operation.id,
        },
        principal=who,
        request_id=request_id,
    )
    record_pipeline_event(delivery.session, FellBack(original))
    runtime.count_fallback(Capability.ORCHESTRATION, original, SUBMIT)
    log.warning("pipeline %s runs on the local executor: %s", row.id, reason)
    return status


def _fallback_unsafe(
    delivery: Delivery, row: WorkflowPipeline, error: IntegrationUnavailable
) -> str | None:
    """Why falling back could run the pipeline twice, or None when it cannot."""
    if delivery.operation.attempts > 1:
        return (
            f"an earlier attempt may have reached {row.provider}; the submission waits for "
            f"{row.provider}, which its key keeps from starting it twice"
        )
    if not _never_received(error):
        return (
            f"{row.provider} may have received it before the call failed; the submission "
            f"waits for {row.provider}, which its key keeps from starting it twice"
        )
    return None


def _never_received(error: IntegrationUnavailable) -> bool:
    """Whether ``error`` proves the tool never got the call."""
    if error.extensions.get("circuit") is not None:  # the guard made no call
        return True
    if error.extensions.get("upstream_status") in _NOT_TAKEN:
        return True
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(seen) < 8 and all(current is not s for s in seen):
        seen.append(current)
        if isinstance(current, ConnectionRefusedError | socket.gaierror):
            return True
        if type(current).__name__ in _CONNECT_FAILURES:
            return True
        reason = getattr(current, "reason", None)  # urllib3 keeps its cause here
        current = (
            current.__cause__
            or current.__context__
            or (reason if isinstance(reason, BaseException) else None)
        )
    return False


def _on_behalf_of(delivery: Delivery) -> tuple[Principal, str | None]:
    """Who asked for the write a delivery makes (see :data:`ON_BEHALF_OF`)."""
    who: dict[str, Any] = delivery.payload.get(ON_BEHALF_OF) or {}
    role = who.get("role")
    principal = Principal(
        key_id=who.get("keyId"),
        name=str(who.get("name") or "system"),
        role=Role(role) if role else None,
    )
    return principal, who.get("requestId")


def fell_back_from(row: WorkflowPipeline) -> str | None:
    """The orchestrator a pipeline was meant for, when it ran on the local executor
    instead."""
    record = row.spec.get(FELL_BACK)
    return str(record["provider"]) if isinstance(record, dict) else None


def fallback_note(row: WorkflowPipeline) -> str | None:
    """What the answer to its submission says of a pipeline that fell back, with why."""
    record = row.spec.get(FELL_BACK)
    if not isinstance(record, dict):
        return None
    return (
        f"running on the local executor instead of {record['provider']}, which was "
        f"unavailable (the pipeline allowed it): {record['reason']}"
    )


def submit_dead(delivery: Delivery, reason: str) -> None:
    """The submission will not happen: the pipeline says so."""
    session = delivery.session
    row = session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.status in TERMINAL:
        return
    moved = _move(session, row, PipelineState.FAILED.value)
    row.message = f"could not be submitted to {row.provider}: {reason}"
    row.finished_at = utcnow()
    if moved:
        _count_finished(session, row)
    propagate_to_job(session=session, row=row)


def set_once(session: Session, row: WorkflowPipeline, condition: Any, **values: Any) -> bool:
    """Write ``values`` to the row where ``condition`` still holds in the database; True
    when this transaction made the change. A state change is counted on this: two
    processes (a request and a worker, two replicas) that both apply the same one find
    that only one of them changed the row (on PostgreSQL the second waits for the
    first's row lock, then sees its commit; SQLite writes one at a time)."""
    result = session.execute(
        update(WorkflowPipeline)
        .where(WorkflowPipeline.id == row.id, condition)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    for name, value in values.items():
        setattr(row, name, value)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _move(
    session: Session,
    row: WorkflowPipeline,
    state: str,
    *,
    from_states: Collection[str] | None = None,
) -> bool:
    """Put the row in ``state``, from any other state or from one of ``from_states``;
    True when this transaction moved it (see :func:`set_once`)."""
    condition = (
        WorkflowPipeline.status.in_(sorted(from_states))
        if from_states is not None
        else WorkflowPipeline.status != state
    )
    return set_once(session, row, condition, status=state)


def _count_finished(session: Session, row: WorkflowPipeline) -> None:
    duration = None
    if row.started_at is not None and row.finished_at is not None:
        duration = (row.finished_at - row.started_at).total_seconds()
    record_pipeline_event(session, Finished(row.provider, row.status, duration))


def apply_status(
    session: Session, row: WorkflowPipeline, status: PipelineStatus, *, retry: bool = False
) -> None:
    """Record what the orchestrator says of the pipeline. A change of state is made by a
    conditional update and counted in /metrics by the one transaction that made it, so a
    replayed sync or a second process applying the same state counts nothing; ``retry``:
    the status answers a retry, which counts when it moves a failed or cancelled
    pipeline."""
    state = status.state.value
    if row.cancel_requested_at is not None and not status.state.terminal:
        state = CANCELLING  # until its owner has carried the cancel out
    moved = False
    if retry or row.status != state:
        moved = _move(session, row, state, from_states=RETRYABLE if retry else None)
    row.external_id = status.external_id
    row.stages = _stages_after(row.stages, status)
    row.message = _with_fallback(row, status.message)
    row.ui_url = status.ui_url
    row.started_at = status.started_at
    row.finished_at = status.finished_at
    row.synced_at = utcnow()
    if moved and retry:
        record_pipeline_event(session, Retried(row.provider))
    if moved and state in TERMINAL:
        _count_finished(session, row)


def _stages_after(stored: list[dict[str, Any]], status: PipelineStatus) -> list[dict[str, Any]]:
    """The stages to record for ``status``. An orchestrator that no longer knows the
    stages (a workflow that vanished from the tool, answered by a restarted plugin) gives
    none: the stored ones stay, and once the pipeline has ended, those that had not are
    closed as the pipeline ended (under a failed one a running stage failed and a pending
    one was skipped), so that no stage stays "running" under an ended pipeline."""
    if status.stages or not stored:
        return [s.model_dump(mode="json") for s in status.stages]
    if not status.state.terminal:
        return stored
    ended = {
        PipelineState.SUCCEEDED: (StageState.SUCCEEDED, StageState.SUCCEEDED),
        PipelineState.FAILED: (StageState.FAILED, StageState.SKIPPED),
        PipelineState.CANCELLED: (StageState.CANCELLED, StageState.SKIPPED),
    }
    running, pending = ended[status.state]
    closed = {StageState.RUNNING.value: running.value, StageState.PENDING.value: pending.value}
    return [
        {**stage, "state": closed[stage["state"]], "message": status.message}
        if stage.get("state") in closed
        else stage
        for stage in stored
    ]


def _with_fallback(row: WorkflowPipeline, message: str) -> str:
    """A fallen-back pipeline's message says so, whatever its orchestrator says next."""
    origin = fell_back_from(row)
    if origin is None:
        return message
    note = f"on the local executor instead of {origin}, which was unavailable"
    return f"{message} ({note})" if message else note


def get_row(*, session: Session, pipeline_id: str) -> WorkflowPipeline:
    row = session.get(WorkflowPipeline, pipeline_id)
    if row is None:
        raise NotFound(f"no pipeline with id {pipeline_id!r}", resource="pipeline", id=pipeline_id)
    return row


def orchestrator_of(runtime: IntegrationRuntime, row: WorkflowPipeline) -> OrchestrationProvider:
    _, orchestrator = runtime.orchestration_provider(row.provider)
    return orchestrator


def sync(*, session: Session, runtime: IntegrationRuntime, row: WorkflowPipeline) -> PipelineView:
    """Refresh a non-terminal row from its provider; fall back to the stored state."""
    if row.status in TERMINAL or row.external_id is None:
        return PipelineView(row)
    try:
        status = orchestrator_of(runtime, row).status(row.external_id)
    except LlmopsError as exc:
        return PipelineView(row, stale=True, reason=exc.detail)
    apply_status(session, row, status)
    propagate_to_job(session=session, row=row)
    session.flush()
    return PipelineView(row)


def propagate_to_job(*, session: Session, row: WorkflowPipeline) -> None:
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
        moved = _move(session, row, PipelineState.CANCELLED.value)
        row.message = "cancelled before it was submitted"
        row.finished_at = utcnow()
        if moved:
            _count_finished(session, row)
        propagate_to_job(session=session, row=row)
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
    if row.cancel_requested_at is None:
        row.cancel_requested_at = utcnow()
    _move(session, row, CANCELLING)
    propagate_to_job(session=session, row=row)
    if adopter_of(runtime, row) is not None:
        # the process that drives the run carries it out (its watcher, within a second;
        # at once where that is this process), or whoever takes the run over
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
    apply_status(delivery.session, row, orchestrator_of(runtime, row).cancel(row.external_id))
    propagate_to_job(session=delivery.session, row=row)
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
        if _move(session, row, PipelineState.PENDING.value, from_states=RETRYABLE):
            record_pipeline_event(session, Retried(row.provider))
        row.message = "waiting to be submitted again"
        row.finished_at = None
        propagate_to_job(session=session, row=row)
        session.flush()
        return PipelineView(row), submission
    return PipelineView(row), _enqueue_action(session, row, RETRY)


def deliver_retry(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    """The outbox handler of :data:`RETRY`."""
    row = delivery.session.get(WorkflowPipeline, delivery.payload["pipelineId"])
    if row is None or row.external_id is None:
        return {"skipped": "nothing to retry"}
    status = orchestrator_of(runtime, row).retry(row.external_id)
    row.owner_id = _owner_here(runtime, row) or row.owner_id
    row.cancel_requested_at = None
    apply_status(delivery.session, row, status, retry=True)
    propagate_to_job(session=delivery.session, row=row)
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
    logs = orchestrator_of(runtime, row).logs(row.external_id, stage=stage, tail_bytes=tail_bytes)
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
    if core.secret_key is not None:  # passphrases as written, not only their keys
        values += [v.strip() for v in core.secret_key.get_secret_value().split(",")]
    with contextlib.suppress(SecretKeyError):  # an unreadable key file holds no key
        values += runtime.secrets.key_values()
    return [v for v in values if v]


def delete_pipeline(*, session: Session, runtime: IntegrationRuntime, pipeline_id: str) -> None:
    """Delete the record; a run still active is cancelled first."""
    row = get_row(session=session, pipeline_id=pipeline_id)
    if row.training_job_id is not None:
        raise Conflict("this pipeline runs a training job: cancel the job instead")
    if row.status not in TERMINAL and row.external_id is not None:
        orchestrator_of(runtime, row).cancel(row.external_id)
    session.execute(delete(PipelineInput).where(PipelineInput.pipeline_id == row.id))
    session.delete(row)
    session.flush()


#: Pipelines a sync pass refreshes between two looks at the outbox.
SYNC_CHUNK = 50


def sync_active(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    meanwhile: Callable[[], object] | None = None,
    every: int = SYNC_CHUNK,
    stop: Callable[[], bool] | None = None,
    take_over: bool = False,
) -> int:
    """Refresh every non-terminal pipeline (the background worker calls this), one
    transaction each, so no lock is held while another pipeline's tool is asked; with
    ``take_over`` (the worker's passes), a run whose owner has stopped is taken over
    (:mod:`llmops.services.run_leases`).

    A pass over many pipelines takes a while (one tool call each): ``meanwhile`` runs
    after every ``every`` of them (the worker delivers the outbox's due writes there), so
    a big pass never holds back a submission, and the pass ends early once ``stop``
    says so (the worker is shutting down). Returns how many were refreshed."""
    ids = list(
        session.scalars(select(WorkflowPipeline.id).where(WorkflowPipeline.status.not_in(TERMINAL)))
    )
    session.commit()
    done = 0
    for pipeline_id in ids:
        if stop is not None and stop():
            break
        row = session.get(WorkflowPipeline, pipeline_id)
        if row is not None and not (take_over and _taken_over(session, runtime, row)):
            sync(session=session, runtime=runtime, row=row)
        session.commit()
        done += 1
        if meanwhile is not None and done % every == 0:
            meanwhile()
    return done


def _taken_over(session: Session, runtime: IntegrationRuntime, row: WorkflowPipeline) -> bool:
    """Take ``row``'s run over when its orchestrator runs it inside a platform process
    and that process has stopped; True when this process now drives it."""
    me = runtime.instance_id
    if me is None or row.external_id is None or row.owner_id == me:
        return False
    adopter = adopter_of(runtime, row)
    if adopter is None:
        return False
    if not run_leases.owner_gone(session, row.owner_id, lease=runtime.settings.run_lease_seconds):
        return False
    job_id = row.training_job_id

    def secrets() -> dict[str, object]:
        return dict(_job_environment(session, runtime, job_id)[1]) if job_id else {}

    return _take_over(
        session=session, runtime=runtime, row=row, executor=adopter, secret_env=secrets
    )


def end_orphans(*, session: Session, runtime: IntegrationRuntime) -> list[str]:
    """End the runs the executors of this host hold that no pipeline expects any more
    (left by a process that died, their pipelines deleted or ended since); runs that a
    pipeline still expects are left to be taken over. Returns the runs ended."""
    ended: list[str] = []
    for name, executor in run_leases.adopters(runtime):
        expected = set(
            session.scalars(
                select(WorkflowPipeline.external_id).where(
                    WorkflowPipeline.provider == name,
                    WorkflowPipeline.status.not_in(TERMINAL),
                    WorkflowPipeline.external_id.is_not(None),
                )
            )
        )
        session.commit()
        ended += executor.recover(keep={e for e in expected if e is not None})
    return ended


def _take_over(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    row: WorkflowPipeline,
    executor: AdoptsRuns,
    secret_env: Callable[[], dict[str, object]],
) -> bool:
    """Make this process the owner of ``row``'s run and adopt it; True when it did.

    The claim is one conditional update, committed before the executor adopts, so two
    processes never both adopt a run. A run whose folder is not here fails with
    :data:`run_leases.NOT_HERE`; one that a live executor still holds (a heartbeat that lagged) is
    handed back."""
    me = runtime.instance_id
    assert me is not None
    assert row.external_id is not None
    previous = row.owner_id
    held = (
        WorkflowPipeline.owner_id.is_(None)
        if previous is None
        else WorkflowPipeline.owner_id == previous
    )
    if not set_once(session, row, held, owner_id=me):
        session.rollback()
        return False
    secrets = secret_env()
    session.commit()
    try:
        status = executor.adopt(row.external_id, secret_env=secrets or None)  # type: ignore[arg-type]
    except NotFound:
        end_interrupted(session, row, run_leases.NOT_HERE)
        session.commit()
        log.warning("pipeline %s: its run is not on this host; marked failed", row.id)
        return True
    except Conflict:
        set_once(session, row, WorkflowPipeline.owner_id == me, owner_id=previous)
        session.commit()
        return False
    log.warning(
        "pipeline %s: took its run over from %s, whose process has stopped", row.id, previous
    )
    apply_status(session, row, status)
    propagate_to_job(session=session, row=row)
    session.commit()
    if row.cancel_requested_at is not None and row.status not in TERMINAL:
        carry_out_cancel(session=session, runtime=runtime, row=row)
    return True


def carry_out_cancel(
    *, session: Session, runtime: IntegrationRuntime, row: WorkflowPipeline
) -> None:
    """Cancel a run this process drives, as requested."""
    assert row.external_id is not None
    try:
        status = orchestrator_of(runtime, row).cancel(row.external_id)
    except LlmopsError as exc:
        log.warning("pipeline %s: the cancel failed: %s", row.id, exc.detail)
        return
    apply_status(session, row, status)
    propagate_to_job(session=session, row=row)
    session.commit()


def cancel_owned(*, session: Session, runtime: IntegrationRuntime) -> int:
    """Carry out the cancels requested of runs this process drives; how many."""
    me = runtime.instance_id
    if me is None:
        return 0
    ids = list(
        session.scalars(
            select(WorkflowPipeline.id).where(
                WorkflowPipeline.owner_id == me,
                WorkflowPipeline.cancel_requested_at.is_not(None),
                WorkflowPipeline.status.not_in(TERMINAL),
            )
        )
    )
    session.commit()
    for pipeline_id in ids:
        row = session.get(WorkflowPipeline, pipeline_id)
        if row is not None and row.external_id is not None:
            carry_out_cancel(session=session, runtime=runtime, row=row)
    return len(ids)
