"""Serving endpoints, deployed through the serving capability (the framework chosen at
creation, or the default one)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    ChecksDeployments,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    DeploymentUpdate,
    InferenceTarget,
    ResourceSpec,
    ServingProvider,
)
from llmops.db.models import CatalogModel, Operation, ServingDeployment, ServingEndpoint, utcnow
from llmops.errors import (
    Conflict,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NotFound,
)
from llmops.integrations import IntegrationRuntime
from llmops.resilience.outbox import Delivery, OperationStatus, enqueue
from llmops.services import catalog, governance
from llmops.services.pagination import Page, paginate

DEPLOY = "endpoint.deploy"
UPDATE = "deployment.update"
DELETE = "endpoint.delete"
SORTS = {"name": ServingEndpoint.name, "createdAt": ServingEndpoint.created_at}


@dataclass(frozen=True)
class DeploymentView:
    row: ServingDeployment
    stale: bool = False
    reason: str | None = None


def _apply(
    runtime: IntegrationRuntime,
    endpoint: ServingEndpoint,
    deployment: ServingDeployment,
    status: DeploymentStatus,
) -> None:
    deployment.external_id = status.external_id
    deployment.state = status.state.value
    deployment.status = _sealed(runtime, status)
    deployment.synced_at = utcnow()
    endpoint.status = status.state.value
    governance.observe_deployment(endpoint, deployment, status)


def _sealed(runtime: IntegrationRuntime, status: DeploymentStatus) -> dict[str, Any]:
    """The status as it is stored: the values of its inference target's headers (the
    framework's own credentials, which the gateway sends) encrypted at rest like plugin
    secrets (:mod:`llmops.secrets`)."""
    data = status.model_dump(mode="json")
    target = data.get("target")
    if isinstance(target, dict) and target.get("headers"):
        headers = {name: runtime.secrets.encrypt(v) for name, v in target["headers"].items()}
        data["target"] = {**target, "headers": headers}
    return data


def _header(runtime: IntegrationRuntime, provider: str, name: str, stored: Any) -> Any:
    return runtime.secrets.decrypt(stored, plugin=provider, field=f"inference header {name}")


def inference_target(
    runtime: IntegrationRuntime, deployment: ServingDeployment
) -> InferenceTarget | None:
    """The stored inference target of a deployment with its headers decrypted (a value
    stored in clear, before encryption at rest, is read as is), or None."""
    stored = (deployment.status or {}).get("target")
    if not stored:
        return None
    headers = {
        name: _header(runtime, deployment.provider, name, value)
        for name, value in (stored.get("headers") or {}).items()
    }
    return InferenceTarget.model_validate({**stored, "headers": headers})


def create_endpoint(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    name: str,
    model_id: str,
    framework: str | None,
    model_uri: str | None,
    description: str,
    model_server: str | None = None,
    autoscaling: AutoscalingSpec,
    resources: ResourceSpec,
    canary: CanarySpec | None,
    options: dict[str, object],
    fallback_endpoint: str | None = None,
    request_timeout_seconds: float = 60.0,
) -> tuple[ServingEndpoint, Operation]:
    """Record the endpoint and its deployment in the outbox (the caller commits, then
    delivers)."""
    governance.check_deploy_role(session, "create endpoints")
    model = catalog.get_model(session=session, model_id=model_id)
    uri = model_uri or _servable_uri(model)
    if autoscaling.min_replicas > autoscaling.max_replicas:
        raise InvalidRequest(
            "autoscaling.minReplicas is larger than maxReplicas",
            parameter="autoscaling.maxReplicas",
        )
    governance.check_endpoint(session, autoscaling, resources)
    framework_name, backend = runtime.serving_provider(framework)
    fallback = _fallback_id(session, fallback_endpoint) if fallback_endpoint else None
    endpoint = ServingEndpoint(
        name=name,
        model_id=model.id,
        framework=framework_name,
        description=description,
        fallback_endpoint_id=fallback,
        request_timeout_seconds=request_timeout_seconds,
    )
    session.add(endpoint)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"an endpoint named {name!r} already exists", parameter="name") from exc
    spec = DeploymentSpec(
        endpoint_id=endpoint.id,
        name=name,
        model_uri=uri,
        model_format=model.framework,
        runtime=model_server,
        autoscaling=autoscaling,
        resources=resources,
        canary=canary,
        options=options,
        idempotency_key=f"endpoint-{endpoint.id}",
    )
    _check(backend, spec)
    deployment = ServingDeployment(
        endpoint_id=endpoint.id, provider=framework_name, spec=spec.model_dump(mode="json")
    )
    session.add(deployment)
    session.flush()
    operation = enqueue(
        session,
        kind=DEPLOY,
        provider=framework_name,
        capability=Capability.SERVING.value,
        idempotency_key=spec.idempotency_key or f"endpoint-{endpoint.id}",
        payload={"deploymentId": deployment.id},
        resource_type="serving-endpoint",
        resource_id=endpoint.id,
    )
    return endpoint, operation


def _check(backend: ServingProvider, spec: DeploymentSpec) -> None:
    """Refuse a runtime or scale metric the framework does not list, then let the
    framework refuse ``spec`` (see ``ServingProvider``: ``check`` is optional), before
    anything is recorded."""
    info = backend.framework()
    if spec.runtime is not None and spec.runtime not in info.runtimes:
        raise InvalidRequest(
            f"{info.name} has no runtime {spec.runtime!r}"
            + (f"; it has {', '.join(info.runtimes)}" if info.runtimes else ""),
            parameter="runtime",
        )
    metric = spec.autoscaling.scale_metric
    if metric is not None and info.scale_metrics and metric not in info.scale_metrics:
        raise InvalidRequest(
            f"{info.name} scales on {', '.join(info.scale_metrics)}, not {metric!r}",
            parameter="autoscaling.scaleMetric",
        )
    if isinstance(backend, ChecksDeployments):
        backend.check(spec)


def find_endpoint(session: Session, name_or_id: str) -> ServingEndpoint | None:
    """The endpoint with this name or id (names are what OpenAI callers pass as model)."""
    return session.scalars(
        select(ServingEndpoint).where(
            or_(ServingEndpoint.name == name_or_id, ServingEndpoint.id == name_or_id)
        )
    ).first()


def latest_deployment(session: Session, endpoint_id: str) -> ServingDeployment | None:
    return session.scalars(
        select(ServingDeployment)
        .where(ServingDeployment.endpoint_id == endpoint_id)
        .order_by(ServingDeployment.created_at.desc())
    ).first()


def _fallback_id(session: Session, name_or_id: str, *, of: str | None = None) -> str:
    other = find_endpoint(session, name_or_id)
    if other is None:
        raise InvalidRequest(
            f"no endpoint {name_or_id!r} to fall back to", parameter="fallbackEndpoint"
        )
    if of is not None and other.id == of:
        raise InvalidRequest("an endpoint cannot fall back to itself", parameter="fallbackEndpoint")
    return other.id


def patch_endpoint(
    *,
    session: Session,
    endpoint_id: str,
    description: str | None,
    fallback_endpoint: str | None,
    request_timeout_seconds: float | None,
) -> ServingEndpoint:
    """The endpoint's own settings (the gateway's fallback and timeout, its description);
    its deployment changes through PATCH .../deployment."""
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    governance.check_deploy_role(session, "change endpoints")
    if description is not None:
        endpoint.description = description
    if fallback_endpoint is not None:
        endpoint.fallback_endpoint_id = (
            _fallback_id(session, fallback_endpoint, of=endpoint.id) if fallback_endpoint else None
        )
    if request_timeout_seconds is not None:
        endpoint.request_timeout_seconds = request_timeout_seconds
    session.flush()
    return endpoint


def deliver_deploy(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    """The outbox handler of :data:`DEPLOY`; the backend dedups by the spec's key."""
    session = delivery.session
    deployment = session.get(ServingDeployment, delivery.payload["deploymentId"])
    if deployment is None:
        return {"skipped": "the endpoint was deleted"}
    endpoint = session.get(ServingEndpoint, deployment.endpoint_id)
    if endpoint is None:  # deleted meanwhile (its deployments go with it)
        return {"skipped": "the endpoint was deleted"}
    status = _backend(runtime, deployment).deploy(DeploymentSpec.model_validate(deployment.spec))
    _apply(runtime, endpoint, deployment, status)
    return {"externalId": status.external_id}


def deploy_dead(delivery: Delivery, reason: str) -> None:
    deployment = delivery.session.get(ServingDeployment, delivery.payload["deploymentId"])
    if deployment is None:
        return
    endpoint = delivery.session.get(ServingEndpoint, deployment.endpoint_id)
    deployment.state = DeploymentState.FAILED.value
    deployment.status = {**deployment.status, "ready": False, "message": f"not deployed: {reason}"}
    if endpoint is not None:
        endpoint.status = DeploymentState.FAILED.value
    governance.close_usage(delivery.session, deployment.endpoint_id)


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
    row = latest_deployment(session, endpoint.id)
    if row is None:
        raise NotFound(f"endpoint {endpoint.id!r} has no deployment")
    return row


def _backend(runtime: IntegrationRuntime, row: ServingDeployment) -> ServingProvider:
    _, backend = runtime.serving_provider(row.provider)
    return backend


def get_deployment(
    *, session: Session, runtime: IntegrationRuntime, endpoint_id: str
) -> DeploymentView:
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    row = _deployment(session, endpoint)
    if row.external_id is None:
        return DeploymentView(row)
    try:
        _apply(runtime, endpoint, row, _backend(runtime, row).status(row.external_id))
    except LlmopsError as exc:
        return DeploymentView(row, stale=True, reason=exc.detail)
    session.flush()
    return DeploymentView(row)


def _servable_uri(model: CatalogModel) -> str:
    """Where a framework loads ``model`` from: its ``uri``; 409 while a registry import
    is still bringing its files, or after it failed; 422 when it has none."""
    if model.status == catalog.IMPORTING:
        raise Conflict(f"model {model.name} is still importing: deploy it once its status is ready")
    if model.status == catalog.IMPORT_FAILED:
        raise Conflict(f"model {model.name} failed to import: import it again to deploy it")
    if not model.uri:
        raise InvalidRequest("the model has no uri: give modelUri", parameter="modelUri")
    return model.uri


def update_deployment(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    endpoint_id: str,
    update: DeploymentUpdate,
    model_id: str | None = None,
) -> tuple[DeploymentView, Operation]:
    """Change the deployment in place; ``model_id`` moves the endpoint to another catalog
    model (served from its uri unless ``update`` names one)."""
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    governance.check_deploy_role(session, "change deployments")
    row = _deployment(session, endpoint)
    if update.promote_canary and update.rollback_canary:
        raise InvalidRequest("promoteCanary and rollbackCanary exclude each other")
    _, backend = runtime.serving_provider(row.provider)  # 409: plugin off
    if model_id is not None:
        model = catalog.get_model(session=session, model_id=model_id)
        if update.model_uri is None:
            update = update.model_copy(update={"model_uri": _servable_uri(model)})
        endpoint.model_id = model.id
    desired = _desired(DeploymentSpec.model_validate(row.spec), update)
    if update.autoscaling is not None or update.resources is not None:
        governance.check_endpoint(session, desired.autoscaling, desired.resources)
    _check(backend, desired)
    row.spec = desired.model_dump(mode="json")
    session.flush()
    operation = enqueue(
        session,
        kind=UPDATE,
        provider=row.provider,
        capability=Capability.SERVING.value,
        idempotency_key=f"deployment-{row.id}-update-{uuid.uuid4().hex}",
        payload={"deploymentId": row.id, "update": update.model_dump(mode="json")},
        resource_type="serving-endpoint",
        resource_id=endpoint.id,
    )
    return DeploymentView(row), operation


def _desired(spec: DeploymentSpec, update: DeploymentUpdate) -> DeploymentSpec:
    """The deployment's desired spec after ``update``: what the worker redeploys from.

    Promoting a canary makes its model the stable one; rolling it back keeps the stable
    model; a new model without a canary replaces the stable one and ends any canary."""
    changes: dict[str, object] = {}
    if update.promote_canary or update.rollback_canary:
        if spec.canary is None:
            raise InvalidRequest(
                "the deployment has no canary to "
                + ("promote" if update.promote_canary else "roll back"),
                parameter="promoteCanary" if update.promote_canary else "rollbackCanary",
            )
        if update.promote_canary:
            changes["model_uri"] = spec.canary.model_uri
        changes["canary"] = None
    elif update.model_uri is not None and update.canary is None:
        changes["canary"] = None
    for key in ("model_uri", "autoscaling", "resources", "canary"):
        if getattr(update, key) is not None:
            changes[key] = getattr(update, key)
    return spec.model_copy(update=changes)


def deliver_update(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    session = delivery.session
    row = session.get(ServingDeployment, delivery.payload["deploymentId"])
    if row is None:
        return {"skipped": "the endpoint was deleted"}
    if row.external_id is None:
        raise IntegrationUnavailable("the deployment has not reached its framework yet")
    endpoint = session.get(ServingEndpoint, row.endpoint_id)
    if endpoint is None:  # deleted meanwhile (its deployments go with it)
        return {"skipped": "the endpoint was deleted"}
    update = DeploymentUpdate.model_validate(delivery.payload["update"])
    _apply(runtime, endpoint, row, _backend(runtime, row).update(row.external_id, update))
    return None


def delete_endpoint(
    *, session: Session, runtime: IntegrationRuntime, endpoint_id: str
) -> Operation | None:
    """Delete the endpoint; its objects in the framework are deleted through the outbox."""
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    governance.check_deploy_role(session, "delete endpoints")
    deployed = [
        row
        for row in session.scalars(
            select(ServingDeployment).where(ServingDeployment.endpoint_id == endpoint.id)
        )
        if row.external_id is not None
    ]
    operation = None
    if deployed:
        operation = enqueue(
            session,
            kind=DELETE,
            provider=deployed[0].provider,
            capability=Capability.SERVING.value,
            idempotency_key=f"endpoint-{endpoint.id}-delete",
            payload={"externalIds": [row.external_id for row in deployed]},
            resource_type="serving-endpoint",
            resource_id=endpoint.id,
        )
    governance.close_usage(session, endpoint.id)
    session.delete(endpoint)
    session.flush()
    return operation


def deliver_delete(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, object] | None:
    _, backend = runtime.serving_provider(delivery.operation.provider)
    for external_id in delivery.payload["externalIds"]:
        try:
            backend.delete(external_id)
        except NotFound:
            continue  # already gone: deleting is idempotent
    return None


REDEPLOY_STATES = frozenset(
    {
        DeploymentState.READY.value,
        DeploymentState.DEPLOYING.value,
        DeploymentState.UPDATING.value,
        DeploymentState.PENDING.value,
        DeploymentState.UNKNOWN.value,
    }
)


def reconcile(*, session: Session, runtime: IntegrationRuntime) -> list[str]:
    """Bring every deployed endpoint's record in step with its framework (the background
    worker calls this every ``serving_sync_interval_seconds``), one transaction each.

    An endpoint whose framework no longer has its deployment (the local Ray stopped with
    the platform, an object deleted behind the platform's back) is deployed again from its
    stored spec, through the outbox: the platform holds the desired state. Returns the ids
    of the endpoints it redeployed."""
    ids = list(session.scalars(select(ServingEndpoint.id)))
    session.commit()
    redeployed: list[str] = []
    for endpoint_id in ids:
        endpoint = session.get(ServingEndpoint, endpoint_id)
        row = None if endpoint is None else latest_deployment(session, endpoint_id)
        if endpoint is None or row is None or row.external_id is None:
            continue
        if _has_pending_write(session, endpoint_id):
            continue  # a deploy, update or delete is on its way: its outcome will tell
        try:
            backend = _backend(runtime, row)
            status = backend.status(row.external_id)
        except NotFound:
            if row.state in REDEPLOY_STATES:
                _redeploy(session, endpoint, row)
                redeployed.append(endpoint_id)
        except LlmopsError:
            pass  # the plugin is off or its tool away: the record stays as it was (stale)
        else:
            _apply(runtime, endpoint, row, status)
        session.commit()
    return redeployed


def _has_pending_write(session: Session, endpoint_id: str) -> bool:
    return (
        session.scalar(
            select(Operation.id).where(
                Operation.resource_type == "serving-endpoint",
                Operation.resource_id == endpoint_id,
                Operation.status.in_(
                    [OperationStatus.PENDING.value, OperationStatus.RUNNING.value]
                ),
            )
        )
        is not None
    )


def _redeploy(session: Session, endpoint: ServingEndpoint, row: ServingDeployment) -> Operation:
    row.state = DeploymentState.DEPLOYING.value
    row.status = {
        **row.status,
        "ready": False,
        "state": DeploymentState.DEPLOYING.value,
        "message": "its framework lost the deployment: deploying it again from the platform's "
        "record",
    }
    endpoint.status = DeploymentState.DEPLOYING.value
    governance.close_usage(session, endpoint.id)  # until its framework has it again
    return enqueue(
        session,
        kind=DEPLOY,
        provider=row.provider,
        capability=Capability.SERVING.value,
        idempotency_key=f"endpoint-{endpoint.id}-redeploy-{uuid.uuid4().hex}",
        payload={"deploymentId": row.id},
        resource_type="serving-endpoint",
        resource_id=endpoint.id,
    )
