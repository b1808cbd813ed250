"""Serving endpoints, deployed through the serving capability (the framework chosen at
creation, or the default one)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    DeploymentSpec,
    DeploymentStatus,
    DeploymentUpdate,
    ResourceSpec,
    ServingBackend,
)
from llmops.db.models import ServingDeployment, ServingEndpoint, utcnow
from llmops.errors import Conflict, InvalidRequest, LlmopsError, NotFound
from llmops.integrations import IntegrationRuntime
from llmops.services import catalog
from llmops.services.pagination import Page, paginate

SORTS = {"name": ServingEndpoint.name, "createdAt": ServingEndpoint.created_at}


@dataclass(frozen=True)
class DeploymentView:
    row: ServingDeployment
    stale: bool = False
    reason: str | None = None


def _apply(
    endpoint: ServingEndpoint, deployment: ServingDeployment, status: DeploymentStatus
) -> None:
    deployment.external_id = status.external_id
    deployment.state = status.state.value
    deployment.status = status.model_dump(mode="json")
    deployment.synced_at = utcnow()
    endpoint.status = status.state.value


def create_endpoint(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    name: str,
    model_id: str,
    framework: str | None,
    model_uri: str | None,
    description: str,
    autoscaling: AutoscalingSpec,
    resources: ResourceSpec,
    canary: CanarySpec | None,
    options: dict[str, object],
) -> ServingEndpoint:
    model = catalog.get_model(session=session, model_id=model_id)
    uri = model_uri or model.uri
    if not uri:
        raise InvalidRequest("the model has no uri: give modelUri", parameter="modelUri")
    if autoscaling.min_replicas > autoscaling.max_replicas:
        raise InvalidRequest("autoscaling.minReplicas is larger than maxReplicas")
    framework_name, backend = runtime.provider(Capability.SERVING, framework)
    endpoint = ServingEndpoint(
        name=name, model_id=model.id, framework=framework_name, description=description
    )
    session.add(endpoint)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"an endpoint named {name!r} already exists") from exc
    spec = DeploymentSpec(
        endpoint_id=endpoint.id,
        name=name,
        model_uri=uri,
        model_format=model.framework,
        autoscaling=autoscaling,
        resources=resources,
        canary=canary,
        options=options,
        idempotency_key=f"endpoint-{endpoint.id}",
    )
    deployment = ServingDeployment(
        endpoint_id=endpoint.id, provider=framework_name, spec=spec.model_dump(mode="json")
    )
    session.add(deployment)
    _apply(endpoint, deployment, backend.deploy(spec))
    session.flush()
    return endpoint


def get_endpoint(*, session: Session, endpoint_id: str) -> ServingEndpoint:
    endpoint = session.get(ServingEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no serving endpoint with id {endpoint_id!r}", resource="endpoint")
    return endpoint


def list_endpoints(
    *, session: Session, sort: str = "-createdAt", limit: int = 50, cursor: str | None = None
) -> Page[ServingEndpoint]:
    stmt: Select[tuple[ServingEndpoint]] = select(ServingEndpoint)
    return paginate(
        session,
        stmt,
        sort=sort,
        columns=SORTS,
        id_column=ServingEndpoint.id,
        limit=limit,
        cursor=cursor,
    )


def _deployment(session: Session, endpoint: ServingEndpoint) -> ServingDeployment:
    row = session.scalars(
        select(ServingDeployment)
        .where(ServingDeployment.endpoint_id == endpoint.id)
        .order_by(ServingDeployment.created_at.desc())
    ).first()
    if row is None:
        raise NotFound(f"endpoint {endpoint.id!r} has no deployment")
    return row


def _backend(runtime: IntegrationRuntime, row: ServingDeployment) -> ServingBackend:
    _, backend = runtime.provider(Capability.SERVING, row.provider)
    return backend  # type: ignore[no-any-return]


def get_deployment(
    *, session: Session, runtime: IntegrationRuntime, endpoint_id: str
) -> DeploymentView:
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    row = _deployment(session, endpoint)
    if row.external_id is None:
        return DeploymentView(row)
    try:
        _apply(endpoint, row, _backend(runtime, row).status(row.external_id))
    except LlmopsError as exc:
        return DeploymentView(row, stale=True, reason=exc.detail)
    session.flush()
    return DeploymentView(row)


def update_deployment(
    *, session: Session, runtime: IntegrationRuntime, endpoint_id: str, update: DeploymentUpdate
) -> DeploymentView:
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    row = _deployment(session, endpoint)
    if row.external_id is None:
        raise Conflict("the deployment has not reached its framework yet")
    if update.promote_canary and update.rollback_canary:
        raise InvalidRequest("promoteCanary and rollbackCanary exclude each other")
    _apply(endpoint, row, _backend(runtime, row).update(row.external_id, update))
    spec = dict(row.spec)
    for key, value in update.model_dump(mode="json", exclude_none=True).items():
        if key not in {"promote_canary", "rollback_canary"}:
            spec[key] = value
    row.spec = spec
    session.flush()
    return DeploymentView(row)


def delete_endpoint(*, session: Session, runtime: IntegrationRuntime, endpoint_id: str) -> None:
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    for row in session.scalars(
        select(ServingDeployment).where(ServingDeployment.endpoint_id == endpoint.id)
    ):
        if row.external_id is not None:
            _backend(runtime, row).delete(row.external_id)
    session.delete(endpoint)
    session.flush()
