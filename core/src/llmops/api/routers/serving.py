"""Serving endpoints and their deployments (the serving capability)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from llmops.api.deps import Cursor, Limit, PlatformDep, RuntimeDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.routers.views import written
from llmops.api.schemas import (
    DeploymentOut,
    DeploymentPatch,
    EndpointCreate,
    EndpointOut,
    EndpointPatch,
    FrameworkOut,
    ListPage,
    QueuedOut,
    camelize,
)
from llmops.api.schemas_traffic import TrafficOut
from llmops.capabilities.common import Capability
from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    DeploymentUpdate,
    ResourceSpec,
)
from llmops.services import serving, traffic
from llmops.services.serving import DeploymentView
from llmops.services.traffic import KEEP_SECONDS
from llmops.services.writes import commit_and_deliver


async def _forget_routes(request: Request) -> AsyncIterator[None]:
    """After a change to an endpoint or its deployment, the gateway resolves afresh."""
    yield
    if request.method != "GET":
        request.app.state.platform.gateway.forget()


router = APIRouter(
    route_class=AnswerKeepingRoute,
    prefix="/serving",
    tags=["serving"],
    dependencies=[Depends(_forget_routes)],
)


REDACTED = "<redacted>"


def _without_secrets(status: dict[str, Any]) -> dict[str, Any]:
    """The stored status with the values of its inference target's headers (the backend's
    own credentials, which the gateway sends) masked: they never leave the server."""
    target = status.get("target")
    if not isinstance(target, dict) or not target.get("headers"):
        return status
    headers = {name: REDACTED for name in target["headers"]}
    return {**status, "target": {**target, "headers": headers}}


def deployment_out(view: DeploymentView) -> DeploymentOut:
    row = view.row
    return DeploymentOut(
        endpoint_id=row.endpoint_id,
        provider=row.provider,
        external_id=row.external_id,
        state=row.state,
        spec=camelize(row.spec),
        status=camelize(_without_secrets(row.status)),
        synced_at=row.synced_at,
        degraded=view.stale,
        degraded_reason=f"showing the last known state: {view.reason}" if view.stale else None,
    )


@router.get("/frameworks", response_model=list[FrameworkOut], summary="Enabled serving frameworks")
def list_serving_frameworks(runtime: RuntimeDep) -> list[FrameworkOut]:
    default = runtime.default_provider_name(Capability.SERVING)
    out = []
    for plugin, name, backend in runtime.iter_serving_providers():
        info = backend.framework()
        out.append(
            FrameworkOut(
                name=name,
                display_name=info.display_name,
                plugin=plugin,
                protocols=[p.value for p in info.protocols],
                supports_autoscaling=info.supports_autoscaling,
                supports_canary=info.supports_canary,
                supports_gpu=info.supports_gpu,
                supports_scale_to_zero=info.supports_scale_to_zero,
                scale_metrics=list(info.scale_metrics),
                runtimes=list(info.runtimes),
                default=name == default,
            )
        )
    return out


@router.post(
    "/endpoints",
    status_code=201,
    response_model=EndpointOut,
    summary="Create an endpoint",
    responses={202: {"model": EndpointOut, "description": "Accepted: waits in the retry queue"}},
)
def create_serving_endpoint(
    body: EndpointCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> EndpointOut:
    endpoint, operation = serving.create_endpoint(
        session=session,
        runtime=runtime,
        name=body.name,
        model_id=body.model_id,
        framework=body.framework,
        model_uri=body.model_uri,
        model_server=body.runtime,
        description=body.description,
        autoscaling=AutoscalingSpec(**body.autoscaling.model_dump()),
        resources=ResourceSpec(**body.resources.model_dump()),
        canary=CanarySpec(**body.canary.model_dump()) if body.canary else None,
        options=body.options,
        fallback_endpoint=body.fallback_endpoint,
        request_timeout_seconds=body.request_timeout_seconds,
    )
    endpoint_id = endpoint.id
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    out = EndpointOut.model_validate(serving.get_endpoint(session=session, endpoint_id=endpoint_id))
    return written(out, result, response)


@router.get("/endpoints", response_model=ListPage[EndpointOut], summary="List endpoints")
def list_serving_endpoints(
    session: SessionDep,
    sort: Annotated[str, Query(pattern=r"^-?(name|createdAt)$")] = "-createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[EndpointOut]:
    page = serving.list_endpoints(session=session, sort=sort, limit=limit, cursor=cursor)
    return ListPage[EndpointOut](
        items=[EndpointOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor
    )


@router.get("/endpoints/{endpointId}", response_model=EndpointOut, summary="Get an endpoint")
def get_serving_endpoint(endpointId: str, session: SessionDep) -> EndpointOut:
    return EndpointOut.model_validate(serving.get_endpoint(session=session, endpoint_id=endpointId))


@router.patch(
    "/endpoints/{endpointId}",
    response_model=EndpointOut,
    summary="Change an endpoint's gateway settings (fallback, timeout) or description",
)
def patch_serving_endpoint(
    endpointId: str, body: EndpointPatch, session: SessionDep
) -> EndpointOut:
    endpoint = serving.patch_endpoint(
        session=session,
        endpoint_id=endpointId,
        description=body.description,
        fallback_endpoint=body.fallback_endpoint,
        request_timeout_seconds=body.request_timeout_seconds,
    )
    return EndpointOut.model_validate(endpoint)


@router.delete(
    "/endpoints/{endpointId}",
    status_code=204,
    response_class=Response,
    summary="Delete an endpoint",
    responses={
        202: {
            "model": QueuedOut,
            "description": "Deleted here; the framework's objects are deleted from the retry queue",
        }
    },
)
def delete_serving_endpoint(
    endpointId: str, session: SessionDep, runtime: RuntimeDep, platform: PlatformDep
) -> Response:
    operation = serving.delete_endpoint(session=session, runtime=runtime, endpoint_id=endpointId)
    if operation is None:
        return Response(status_code=204)
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    if result.delivered:
        return Response(status_code=204)
    body = QueuedOut(degraded=True, degraded_reason=result.reason, operation_id=result.operation_id)
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True),
        status_code=202,
        headers={"Location": f"/llm-ops/v1/operations/{result.operation_id}"},
    )


@router.get(
    "/endpoints/{endpointId}/deployment",
    response_model=DeploymentOut,
    summary="An endpoint's deployment: replicas, autoscaling, traffic, state",
)
def get_serving_deployment(
    endpointId: str, session: SessionDep, runtime: RuntimeDep
) -> DeploymentOut:
    return deployment_out(
        serving.get_deployment(session=session, runtime=runtime, endpoint_id=endpointId)
    )


@router.get(
    "/endpoints/{endpointId}/traffic",
    response_model=TrafficOut,
    summary="An endpoint's recent traffic: requests, errors, latency, tokens",
)
def get_serving_traffic(
    endpointId: str,
    session: SessionDep,
    platform: PlatformDep,
    window_seconds: Annotated[
        float,
        Query(alias="windowSeconds", ge=1, le=KEEP_SECONDS, description="the last N seconds"),
    ] = 300,
) -> TrafficOut:
    """Computed on the server from the gateway's counters, sampled every
    ``LLMOPS_TRAFFIC_SAMPLE_SECONDS`` for the last hour (what Prometheus' ``increase()``
    and ``histogram_quantile()`` would say over the window), for this process's
    requests."""
    endpoint = serving.get_endpoint(session=session, endpoint_id=endpointId)
    found = traffic.window(platform.traffic, endpoint.name, window_seconds)
    return TrafficOut.model_validate(
        {**asdict(found), "endpoint_id": endpoint.id, "endpoint": endpoint.name}
    )


@router.patch(
    "/endpoints/{endpointId}/deployment",
    response_model=DeploymentOut,
    summary="Change replicas, autoscaling, model version or canary traffic",
    responses={202: {"model": DeploymentOut, "description": "Accepted: waits in the retry queue"}},
)
def update_serving_deployment(
    endpointId: str,
    body: DeploymentPatch,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    response: Response,
) -> DeploymentOut:
    update = DeploymentUpdate.model_validate(body.model_dump(exclude={"model_id"}))
    _, operation = serving.update_deployment(
        session=session,
        runtime=runtime,
        endpoint_id=endpointId,
        update=update,
        model_id=body.model_id,
    )
    result = commit_and_deliver(
        session=session, outbox=platform.outbox, runtime=runtime, operation=operation
    )
    view = serving.get_deployment(session=session, runtime=runtime, endpoint_id=endpointId)
    return written(deployment_out(view), result, response)
