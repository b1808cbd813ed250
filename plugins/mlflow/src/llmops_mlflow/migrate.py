"""``migrate-experiments-to-mlflow``: move the experiment runs the platform recorded under
another tracker (or under none) into MLflow.

For each such run it creates the MLflow run under the key the platform gives a job's run
(so a run MLflow already has is found, not made twice), copies its params and every
metric point (the full history when the old tracker still answers, else the last known
values), ends it with its status, and points the platform's record, and any write still
queued for it, at MLflow. Running it again does nothing more: moved runs are skipped, and a
run interrupted half-way is found by its key and its points are stored once (MLflow keeps
identical points once). ``--dry-run`` prints what it would do and changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.tracking import MetricPoint, RunSpec, RunStatus
from llmops.db.models import ExperimentRun, Operation, utcnow
from llmops.errors import LlmopsError
from llmops.integrations import IntegrationRuntime
from llmops.resilience.outbox import OperationStatus

TARGET = "mlflow"
_ENDED = {s.value: s for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)}


@dataclass
class Move:
    run_id: str
    training_job_id: str | None
    experiment: str
    run_name: str
    source: str | None
    source_run: str | None
    status: str
    params: int
    metrics: list[str]
    moved_to: str | None = None
    points: int = 0
    history: bool = False
    error: str | None = None

    def describe(self) -> str:
        where = f"{self.source} run {self.source_run}" if self.source else "the platform only"
        return (
            f"run {self.run_id} ({self.run_name!r}, job {self.training_job_id or '-'}) from "
            f"{where} -> MLflow experiment {self.experiment!r}: {self.params} params, "
            f"metrics {', '.join(self.metrics) or 'none'}, status {self.status}"
        )


@dataclass
class Summary:
    moves: list[Move] = field(default_factory=list)

    @property
    def failed(self) -> list[Move]:
        return [m for m in self.moves if m.error is not None]


def pending_moves(session: Session) -> list[Move]:
    """The runs not yet in MLflow, oldest first."""
    rows = session.scalars(
        select(ExperimentRun)
        .where(or_(ExperimentRun.provider.is_(None), ExperimentRun.provider != TARGET))
        .order_by(ExperimentRun.created_at, ExperimentRun.id)
    )
    return [
        Move(
            run_id=row.id,
            training_job_id=row.training_job_id,
            experiment=row.experiment_name,
            run_name=row.run_name,
            source=row.provider,
            source_run=row.external_id,
            status=row.status,
            params=len(row.params),
            metrics=sorted(row.latest_metrics),
        )
        for row in rows
    ]


def _history(
    runtime: IntegrationRuntime, row: ExperimentRun
) -> tuple[dict[str, str], list[MetricPoint], bool]:
    """Params and metric points of ``row``: from its old tracker when that still answers
    (the full history), else what the platform knows (each metric's last value)."""
    params = {k: str(v) for k, v in row.params.items()}
    if row.provider is not None and row.external_id is not None:
        try:
            _, source = runtime.provider(Capability.TRACKING, row.provider)
            info = source.get_run(row.external_id)
            points = [
                point
                for key in sorted(info.latest_metrics)
                for point in source.metric_history(row.external_id, key)
            ]
            return {**params, **info.params}, points, True
        except LlmopsError:
            pass
    moment = row.synced_at or row.updated_at or row.created_at
    points = [
        MetricPoint(key=key, value=float(value), step=0, timestamp=moment)
        for key, value in sorted(row.latest_metrics.items())
    ]
    return params, points, False


def move_run(session: Session, runtime: IntegrationRuntime, move: Move) -> None:
    row = session.get(ExperimentRun, move.run_id)
    if row is None or row.provider == TARGET:
        return
    _, mlflow = runtime.provider(Capability.TRACKING, TARGET)
    params, points, move.history = _history(runtime, row)
    key = (
        f"training-job-{row.training_job_id}" if row.training_job_id else f"experiment-run-{row.id}"
    )
    tags = {"llmops.migrated_from": row.provider or "platform"}
    if row.training_job_id:
        tags["llmops.training_job_id"] = row.training_job_id
    info = mlflow.create_run(
        RunSpec(
            experiment=row.experiment_name,
            run_name=row.run_name,
            params=params,
            tags=tags,
            idempotency_key=key,
        )
    )
    missing = {k: v for k, v in params.items() if k not in info.params}
    if missing:  # a run an interrupted migration created may lack them
        mlflow.log_params(info.run_id, missing)
    size = max(1, int(getattr(mlflow, "max_metrics_per_batch", 1000)))
    for start in range(0, len(points), size):
        mlflow.log_metrics(info.run_id, points[start : start + size])
    move.points = len(points)
    if row.status in _ENDED:
        info = mlflow.end_run(info.run_id, _ENDED[row.status])
    row.provider = TARGET
    row.external_id = info.run_id
    row.experiment_name = info.experiment_name
    row.status = info.status.value
    row.params = dict(info.params)
    row.latest_metrics = {**row.latest_metrics, **info.latest_metrics}
    row.ui_url = info.ui_url
    row.synced_at = utcnow()
    # writes still queued for the old tracker (points it never got) go to MLflow instead
    for operation in session.scalars(
        select(Operation).where(
            Operation.resource_id == row.id,
            Operation.status == OperationStatus.PENDING.value,
        )
    ):
        operation.provider = TARGET
    move.moved_to = info.run_id


def migrate(
    sessions: Callable[[], Session],
    runtime: IntegrationRuntime,
    *,
    dry_run: bool,
    echo: Callable[[str], Any] = print,
) -> Summary:
    with sessions() as session:
        summary = Summary(pending_moves(session))
    if not summary.moves:
        echo("nothing to move: every experiment run is in MLflow")
        return summary
    if not dry_run:
        runtime.provider(Capability.TRACKING, TARGET)  # 409 when the plugin is off
    for move in summary.moves:
        if dry_run:
            echo(f"would move {move.describe()}")
            continue
        with sessions() as session:
            try:
                move_run(session, runtime, move)
                session.commit()
            except LlmopsError as exc:
                session.rollback()
                move.error = exc.detail
                echo(f"failed to move run {move.run_id}: {exc.detail}")
                continue
        source = "its full history" if move.history else "its last known values"
        echo(
            f"moved {move.describe()}: MLflow run {move.moved_to}, {move.points} points ({source})"
        )
    verb = "would move" if dry_run else "moved"
    done = len(summary.moves) - len(summary.failed)
    echo(f"{verb} {done} of {len(summary.moves)} runs" + (" (dry run)" if dry_run else ""))
    return summary


@click.command(name="migrate-experiments-to-mlflow")
@click.option("--dry-run", is_flag=True, help="print what would move; change nothing")
def main(dry_run: bool) -> None:
    """Move experiment runs recorded under another tracker, or none, into MLflow. Reads the
    platform's settings (LLMOPS_* variables, LLMOPS_MLFLOW__* for MLflow) and database."""
    from llmops.config import CoreSettings
    from llmops.platform import Platform

    platform = Platform(CoreSettings())
    platform.start()
    try:
        summary = migrate(platform.sessions, platform.runtime, dry_run=dry_run, echo=click.echo)
    except LlmopsError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        platform.stop()
    sys.exit(1 if summary.failed else 0)


if __name__ == "__main__":
    main()
