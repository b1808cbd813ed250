"""Serving endpoints and their deployments (the serving capability)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from llmops.api.deps import Cursor, Limit, RuntimeDep, SessionDep
from llmops.api.schemas import (
    DeploymentOut,
    DeploymentPatch,
    EndpointCreate,
    EndpointOut,
    FrameworkOut,
    ListPage,
    camelize,
)
from llmops.capabilities.common import Capability
from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    DeploymentUpdate,
    ResourceSpec,
)
from llmops.services import serving
from llmops.services.serving import DeploymentView

router = APIRouter(prefix="/serving", tags=["serving"])


def deployment_out(view: DeploymentView) -> DeploymentOut:
    row = view.row
    return DeploymentOut(
        endpoint_id=row.endpoint_id,
        provider=row.provider,
        external_id=row.external_id,
        state=row.state,
        spec=camelize(row.spec),
        status=camelize(row.status),
        synced_at=row.synced_at,
        degraded=view.stale,
        degraded_reason=f"showing the last known state: {view.reason}" if view.stale else None,
    )


@router.get("/frameworks", response_model=list[FrameworkOut], summary="Enabled serving frameworks")
def list_serving_frameworks(runtime: RuntimeDep) -> list[FrameworkOut]:
    default = runtime.default_provider_name(Capability.SERVING)
    out = []
    for plugin, capability, name, backend in runtime.iter_providers():
        if capability is not Capability.SERVING:
            continue
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
                default=name == default,
            )
        )
    return out


@router.post(
    "/endpoints", status_code=201, response_model=EndpointOut, summary="Create an endpoint"
)
def create_serving_endpoint(
    body: EndpointCreate, session: SessionDep, runtime: RuntimeDep
) -> EndpointOut:
    endpoint = serving.create_endpoint(
        session=session,
        runtime=runtime,
        name=body.name,
        model_id=body.model_id,
        framework=body.framework,
        model_uri=body.model_uri,
        description=body.description,
        autoscaling=AutoscalingSpec(**body.autoscaling.model_dump()),
        resources=ResourceSpec(**body.resources.model_dump()),
        canary=CanarySpec(**body.canary.model_dump()) if body.canary else None,
        options=body.options,
    )
    return EndpointOut.model_validate(endpoint)


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


@router.delete(
    "/endpoints/{endpointId}",
    status_code=204,
    response_class=Response,
    summary="Delete an endpoint",
)
def delete_serving_endpoint(endpointId: str, session: SessionDep, runtime: RuntimeDep) -> Response:
    serving.delete_endpoint(session=session, runtime=runtime, endpoint_id=endpointId)
    return Response(status_code=204)


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


@router.patch(
    "/endpoints/{endpointId}/deployment",
    response_model=DeploymentOut,
    summary="Change replicas, autoscaling, model version or canary traffic",
)
def update_serving_deployment(
    endpointId: str,
    body: DeploymentPatch,
    session: SessionDep,
    runtime: RuntimeDep,
) -> DeploymentOut:
    update = DeploymentUpdate.model_validate(body.model_dump())
    return deployment_out(
        serving.update_deployment(
            session=session, runtime=runtime, endpoint_id=endpointId, update=update
        )
    )
