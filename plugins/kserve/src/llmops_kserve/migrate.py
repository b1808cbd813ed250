"""``migrate-serving-to-kserve``: move the serving endpoints the platform recorded without a
framework (from before serving frameworks were plugins, or made by hand-written
Kubernetes scripts) onto KServe.

For each such endpoint:
* when an InferenceService of its name exists that llmops did not deploy (the old
  scripts' object), it is **adopted**: labelled and annotated as the endpoint's, with its
  predictor left as it is (KServe rolls out one identical revision, as it does for any
  label change; the running one serves until it is ready);
* when one exists that llmops deployed for this endpoint (a run interrupted half-way),
  it is taken as it is;
* else an InferenceService is **created** from the endpoint's catalog model.

The endpoint's record then names KServe and the object. Running it again does nothing
more: migrated endpoints have a framework. ``--dry-run`` prints what it would do, checks
that each object could be built, and changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.serving import AutoscalingSpec, DeploymentSpec, DeploymentStatus
from llmops.db.models import CatalogModel, ServingDeployment, ServingEndpoint, utcnow
from llmops.errors import InvalidRequest, LlmopsError
from llmops.integrations import IntegrationRuntime
from llmops_kserve import objects
from llmops_kserve.backend import KServeBackend

TARGET = "kserve"


@dataclass
class Move:
    endpoint_id: str
    name: str
    model_uri: str | None
    action: str = ""  # adopt, take, create
    object_name: str | None = None
    state: str | None = None
    error: str | None = None

    def describe(self) -> str:
        what = {
            "adopt": f"adopt the existing InferenceService {self.object_name!r}",
            "take": f"take the InferenceService {self.object_name!r} llmops already made",
            "create": f"create InferenceService {self.object_name or self.name!r} serving "
            f"{self.model_uri}",
        }.get(self.action, "check it")
        return f"endpoint {self.name!r} ({self.endpoint_id}): {what}"


@dataclass
class Summary:
    moves: list[Move] = field(default_factory=list)

    @property
    def failed(self) -> list[Move]:
        return [m for m in self.moves if m.error is not None]


def pending(session: Session, names: Sequence[str] = ()) -> list[Move]:
    """The endpoints recorded without a framework, oldest first."""
    stmt = select(ServingEndpoint).where(ServingEndpoint.framework.is_(None))
    if names:
        stmt = stmt.where(ServingEndpoint.name.in_(list(names)))
    moves = []
    for endpoint in session.scalars(stmt.order_by(ServingEndpoint.created_at, ServingEndpoint.id)):
        model = session.get(CatalogModel, endpoint.model_id) if endpoint.model_id else None
        moves.append(Move(endpoint.id, endpoint.name, model.uri if model else None))
    return moves


def spec_for(session: Session, endpoint: ServingEndpoint) -> DeploymentSpec:
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


def plan(backend: KServeBackend, spec: DeploymentSpec, move: Move) -> dict[str, Any] | None:
    """Decide ``move.action`` from what the cluster has (reads only); the object of the
    endpoint's name, if there is one."""
    existing = backend.api.find(spec.name)
    if existing is None:
        backend.check(spec)  # refuses what KServe would
        move.action, move.object_name = "create", spec.name
        return None
    record = objects.record(existing)
    move.object_name = spec.name
    if record is None:
        move.action = "adopt"
    elif record.idempotency_key == spec.idempotency_key:
        move.action = "take"
    else:
        raise InvalidRequest(
            f"InferenceService {spec.name!r} belongs to another llmops endpoint "
            f"({record.endpoint_id})",
            parameter="name",
        )
    return existing


def move_endpoint(session: Session, backend: KServeBackend, move: Move) -> None:
    endpoint = session.get(ServingEndpoint, move.endpoint_id)
    if endpoint is None or endpoint.framework is not None:
        return
    spec = spec_for(session, endpoint)
    existing = plan(backend, spec, move)
    if move.action == "adopt" and existing is not None:
        spec = objects.adopted(existing, spec)  # the record names what it runs
        status = backend.adopt(existing, spec)
    else:
        status = backend.deploy(spec)
        spec = spec.model_copy(update={"name": status.external_id})
    _record(session, endpoint, spec, status)
    move.state = status.state.value


def _record(
    session: Session, endpoint: ServingEndpoint, spec: DeploymentSpec, status: DeploymentStatus
) -> None:
    endpoint.framework = TARGET
    endpoint.status = status.state.value
    session.add(
        ServingDeployment(
            endpoint_id=endpoint.id,
            provider=TARGET,
            external_id=status.external_id,
            spec=spec.model_dump(mode="json"),
            status=status.model_dump(mode="json"),
            state=status.state.value,
            synced_at=utcnow(),
        )
    )


def migrate(
    sessions: Callable[[], Session],
    runtime: IntegrationRuntime,
    *,
    dry_run: bool,
    names: Sequence[str] = (),
    echo: Callable[[str], Any] = print,
) -> Summary:
    with sessions() as session:
        summary = Summary(pending(session, names))
    if not summary.moves:
        echo("nothing to migrate: every serving endpoint has a framework")
        return summary
    _, backend = runtime.provider(Capability.SERVING, TARGET)  # 409 when the plugin is off
    # the runtime hands out the backend behind its guard (deadlines, circuit breaker)
    if not isinstance(getattr(backend, "unwrapped", backend), KServeBackend):
        raise InvalidRequest(f"the serving framework {TARGET!r} is not llmops-kserve's")
    for move in summary.moves:
        with sessions() as session:
            try:
                if dry_run:
                    endpoint = session.get(ServingEndpoint, move.endpoint_id)
                    assert endpoint is not None
                    plan(backend, spec_for(session, endpoint), move)
                    echo(f"would {move.describe()}")
                    continue
                move_endpoint(session, backend, move)
                session.commit()
            except LlmopsError as exc:
                session.rollback()
                move.error = exc.detail
                echo(f"cannot migrate endpoint {move.name!r}: {exc.detail}")
                continue
        echo(f"did {move.describe()}: {move.state}")
    done = len(summary.moves) - len(summary.failed)
    verb = "would migrate" if dry_run else "migrated"
    echo(
        f"{verb} {done} of {len(summary.moves)} endpoint(s) to KServe"
        + (" (dry run: nothing changed)" if dry_run else "")
    )
    return summary


@click.command(name="migrate-serving-to-kserve")
@click.option("--dry-run", is_flag=True, help="print what would happen; change nothing")
@click.option("--endpoint", "names", multiple=True, help="only this endpoint (name; repeatable)")
def main(dry_run: bool, names: tuple[str, ...]) -> None:
    """Move serving endpoints recorded without a framework onto KServe. Reads the
    platform's settings (LLMOPS_* variables, LLMOPS_KSERVE__* for KServe) and database."""
    from llmops.config import CoreSettings
    from llmops.platform import Platform

    platform = Platform(CoreSettings())
    platform.start()
    try:
        summary = migrate(
            platform.sessions, platform.runtime, dry_run=dry_run, names=names, echo=click.echo
        )
    except LlmopsError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        platform.stop()
    sys.exit(1 if summary.failed else 0)


if __name__ == "__main__":
    main()
