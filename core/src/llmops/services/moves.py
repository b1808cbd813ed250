"""Moving records from one provider to another: experiment runs to another tracker,
serving endpoints onto a serving framework.

Plugins reach these through their CLI commands (``llmops mlflow migrate``, ``llmops kserve
migrate``: :class:`~llmops.plugins.commands.PlatformCommands`); everything here goes through
the capabilities' Protocols, so a move works for any provider. Each record moves in its
own transaction, so one that fails leaves the others moved; running a move again does
nothing more (moved records are skipped, and a record interrupted half-way is found by
its idempotency key in the target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from llmops.capabilities.serving import (
    AdoptsDeployments,
    AutoscalingSpec,
    ChecksDeployments,
    DeploymentSpec,
    DeploymentStatus,
)
from llmops.capabilities.tracking import MetricPoint, RunSpec, RunStatus, TrackingProvider
from llmops.db.models import (
    CatalogModel,
    ExperimentRun,
    Operation,
    ServingDeployment,
    ServingEndpoint,
    utcnow,
)
from llmops.errors import InvalidRequest, LlmopsError
from llmops.integrations import IntegrationRuntime
from llmops.plugins.commands import MoveOutcome, MoveReport, RecordMove
from llmops.resilience.outbox import OperationStatus

Echo = Callable[[str], Any]
Sessions = Callable[[], Session]

_ENDED = {s.value: s for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)}


# -------------------------------------------------------------------------------------
# Experiment runs
# -------------------------------------------------------------------------------------


def _runs_to_move(session: Session, target: str) -> list[ExperimentRun]:
    return list(
        session.scalars(
            select(ExperimentRun)
            .where(or_(ExperimentRun.provider.is_(None), ExperimentRun.provider != target))
            .order_by(ExperimentRun.created_at, ExperimentRun.id)
        )
    )


def _describe_run(row: ExperimentRun, target: str) -> str:
    where = f"{row.provider} run {row.external_id}" if row.provider else "the platform only"
    return (
        f"run {row.id} ({row.run_name!r}, job {row.training_job_id or '-'}) from {where} -> "
        f"{target} experiment {row.experiment_name!r}: {len(row.params)} params, metrics "
        f"{', '.join(sorted(row.latest_metrics)) or 'none'}, status {row.status}"
    )


def _history(
    runtime: IntegrationRuntime, row: ExperimentRun
) -> tuple[dict[str, str], list[MetricPoint], bool]:
    """Params and metric points of ``row``: from its old tracker when that still answers
    (the full history), else what the platform knows (each metric's last value)."""
    params = {k: str(v) for k, v in row.params.items()}
    if row.provider is not None and row.external_id is not None:
        try:
            _, source = runtime.tracking_provider(row.provider)
            info = source.get_run(row.external_id)
            points = [
                point
                for key in sorted(info.latest_metrics)
                for point in source.metric_history(row.external_id, key)
            ]
            return {**params, **info.params}, points, True
        except LlmopsError:
            pass  # the old tracker is gone or away: the platform's own record serves
    moment = row.synced_at or row.updated_at or row.created_at
    points = [
        MetricPoint(key=key, value=float(value), step=0, timestamp=moment)
        for key, value in sorted(row.latest_metrics.items())
    ]
    return params, points, False


def _move_run(
    session: Session, runtime: IntegrationRuntime, tracker: TrackingProvider, row: ExperimentRun,
    target: str,
) -> str:  # fmt: skip
    params, points, full = _history(runtime, row)
    key = (
        f"training-job-{row.training_job_id}" if row.training_job_id else f"experiment-run-{row.id}"
    )
    tags = {"llmops.migrated_from": row.provider or "platform"}
    if row.training_job_id:
        tags["llmops.training_job_id"] = row.training_job_id
    info = tracker.create_run(
        RunSpec(
            experiment=row.experiment_name,
            run_name=row.run_name,
            params=params,
            tags=tags,
            idempotency_key=key,
        )
    )
    missing = {k: v for k, v in params.items() if k not in info.params}
    if missing:  # a run an interrupted move created may lack them
        tracker.log_params(info.run_id, missing)
    size = max(1, int(tracker.max_metrics_per_batch))
    for start in range(0, len(points), size):
        tracker.log_metrics(info.run_id, points[start : start + size])
    if row.status in _ENDED:
        info = tracker.end_run(info.run_id, _ENDED[row.status])
    row.provider = target
    row.external_id = info.run_id
    row.experiment_name = info.experiment_name
    row.status = info.status.value
    row.params = dict(info.params)
    row.latest_metrics = {**row.latest_metrics, **info.latest_metrics}
    row.ui_url = info.ui_url
    row.synced_at = utcnow()
    # writes still queued for the old tracker (points it never got) go to the new one
    for operation in session.scalars(
        select(Operation).where(
            Operation.resource_id == row.id,
            Operation.status == OperationStatus.PENDING.value,
        )
    ):
        operation.provider = target
    source = "its full history" if full else "its last known values"
    return f"run {info.run_id}, {len(points)} points ({source})"


def move_runs(
    sessions: Sessions, runtime: IntegrationRuntime, *, target: str, dry_run: bool, echo: Echo
) -> MoveReport:
    """Move every experiment run not recorded under ``target`` to that tracker."""
    report = MoveReport(target=target, dry_run=dry_run)
    with sessions() as session:
        ids = [row.id for row in _runs_to_move(session, target)]
    if not ids:
        echo(f"nothing to move: every experiment run is in {target}")
        return report
    _, tracker = runtime.tracking_provider(target)  # 409 when the plugin is off
    for run_id in ids:
        with sessions() as session:
            row = session.get(ExperimentRun, run_id)
            if row is None or row.provider == target:
                continue
            move = RecordMove(
                resource_type="experiment-run",
                resource_id=row.id,
                name=row.run_name,
                source=row.provider,
                target=target,
                action="copy",
                outcome=MoveOutcome.PLANNED,
            )
            described = _describe_run(row, target)
            if dry_run:
                echo(f"would move {described}")
                report.moves.append(move)
                continue
            try:
                detail = _move_run(session, runtime, tracker, row, target)
                session.commit()
            except LlmopsError as exc:
                session.rollback()
                _done(
                    report,
                    move,
                    MoveOutcome.FAILED,
                    exc.detail,
                    echo,
                    f"failed to move run {run_id}",
                )
                continue
        _done(report, move, MoveOutcome.MOVED, detail, echo, f"moved {described}")
    _summarise(report, "run", echo)
    return report


# -------------------------------------------------------------------------------------
# Serving endpoints
# -------------------------------------------------------------------------------------


def _endpoint_spec(session: Session, endpoint: ServingEndpoint) -> DeploymentSpec:
    """The deployment the endpoint asks for: its catalog model, and the scaling of any
    deployment recorded for it."""
    model = session.get(CatalogModel, endpoint.model_id) if endpoint.model_id else None
    if model is None or not model.uri:
        raise InvalidRequest(
            f"endpoint {endpoint.name!r} has no catalog model with a uri to serve",
            parameter="model",
        )
    recorded = session.scalars(
        select(ServingDeployment)
        .where(ServingDeployment.endpoint_id == endpoint.id)
        .order_by(ServingDeployment.created_at.desc())
    ).first()
    autoscaling: Any = (recorded.spec if recorded else {}).get("autoscaling") or AutoscalingSpec()
    return DeploymentSpec(
        endpoint_id=endpoint.id,
        name=endpoint.name,
        model_uri=model.uri,
        model_format=model.framework,
        autoscaling=AutoscalingSpec.model_validate(autoscaling),
        idempotency_key=f"endpoint-{endpoint.id}",
    )


def _record_deployment(
    session: Session,
    endpoint: ServingEndpoint,
    target: str,
    spec: DeploymentSpec,
    status: DeploymentStatus,
) -> None:
    endpoint.framework = target
    endpoint.status = status.state.value
    session.add(
        ServingDeployment(
            endpoint_id=endpoint.id,
            provider=target,
            external_id=status.external_id,
            spec=spec.model_dump(mode="json"),
            status=status.model_dump(mode="json"),
            state=status.state.value,
            synced_at=utcnow(),
        )
    )


def move_endpoints(
    sessions: Sessions,
    runtime: IntegrationRuntime,
    *,
    target: str,
    dry_run: bool,
    names: Sequence[str] = (),
    echo: Echo,
) -> MoveReport:
    """Move the endpoints recorded without a framework (or only ``names``) onto ``target``."""
    report = MoveReport(target=target, dry_run=dry_run)
    with sessions() as session:
        stmt = select(ServingEndpoint.id).where(ServingEndpoint.framework.is_(None))
        if names:
            stmt = stmt.where(ServingEndpoint.name.in_(list(names)))
        ids = list(session.scalars(stmt.order_by(ServingEndpoint.created_at, ServingEndpoint.id)))
    if not ids:
        echo("nothing to migrate: every serving endpoint has a framework")
        return report
    _, backend = runtime.serving_provider(target)  # 409 when the plugin is off
    for endpoint_id in ids:
        with sessions() as session:
            endpoint = session.get(ServingEndpoint, endpoint_id)
            if endpoint is None or endpoint.framework is not None:
                continue
            move = RecordMove(
                resource_type="serving-endpoint",
                resource_id=endpoint.id,
                name=endpoint.name,
                source=None,
                target=target,
                action="deploy",
                outcome=MoveOutcome.PLANNED,
            )
            try:
                spec = _endpoint_spec(session, endpoint)
                adopted = (
                    backend.adoptable(spec) if isinstance(backend, AdoptsDeployments) else None
                )
                if adopted is not None:
                    move = move.model_copy(update={"action": "adopt"})
                    what = f"adopt the existing deployment {spec.name!r}"
                else:
                    what = f"deploy {spec.name!r} serving {spec.model_uri}"
                if dry_run:
                    if adopted is None and isinstance(backend, ChecksDeployments):
                        backend.check(spec)  # refuses what the framework would
                    echo(f"would {what} for endpoint {endpoint.name!r} ({endpoint.id})")
                    report.moves.append(move)
                    continue
                if adopted is not None and isinstance(backend, AdoptsDeployments):
                    spec, status = adopted, backend.adopt(adopted)
                else:
                    status = backend.deploy(spec)
                    spec = spec.model_copy(update={"name": status.external_id})
                _record_deployment(session, endpoint, target, spec, status)
                session.commit()
            except LlmopsError as exc:
                session.rollback()
                failed = f"cannot migrate endpoint {move.name!r}"
                _done(report, move, MoveOutcome.FAILED, exc.detail, echo, failed)
                continue
        did = f"did {what} for endpoint {move.name!r} ({move.resource_id})"
        _done(report, move, MoveOutcome.MOVED, status.state.value, echo, did)
    _summarise(report, "endpoint", echo)
    return report


def _done(
    report: MoveReport, move: RecordMove, outcome: MoveOutcome, detail: str, echo: Echo, what: str
) -> None:
    echo(f"{what}: {detail}")
    report.moves.append(move.model_copy(update={"outcome": outcome, "detail": detail}))


def _summarise(report: MoveReport, noun: str, echo: Echo) -> None:
    done = len(report.moves) - len(report.failed)
    verb = "would move" if report.dry_run else "moved"
    echo(
        f"{verb} {done} of {len(report.moves)} {noun}(s) to {report.target}"
        + (" (dry run: nothing changed)" if report.dry_run else "")
    )
