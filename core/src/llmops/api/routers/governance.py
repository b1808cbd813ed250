"""Governance: the audit log, the policies the services enforce, prices and costs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from llmops.api.deps import Cursor, Limit, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import ListPage
from llmops.api.schemas_auth import AuditEntryOut
from llmops.api.schemas_governance import (
    CostReportOut,
    PoliciesIn,
    PoliciesOut,
    PricesIn,
    PricesOut,
)
from llmops.api.security import add_audit_details
from llmops.services import audit, governance
from llmops.services.audit import Outcome

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/governance", tags=["governance"])


@router.get("/audit-logs", response_model=ListPage[AuditEntryOut], summary="The audit log")
def list_audit_logs(
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=200, description="an API key's name")] = None,
    action: Annotated[str | None, Query(max_length=100, description="an operation id")] = None,
    resource_type: Annotated[
        str | None, Query(alias="resourceType", max_length=40, description="e.g. catalog/models")
    ] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=200)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="inclusive; UTC unless an offset")] = None,
    until: Annotated[datetime | None, Query(description="exclusive; UTC unless an offset")] = None,
    sort: Annotated[str, Query(pattern=r"^-?at$")] = "-at",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[AuditEntryOut]:
    """Every write through the API, denied ones included, newest first."""
    page = audit.list_entries(
        session=session,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        since=since,
        until=until,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return ListPage[AuditEntryOut](
        items=[AuditEntryOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor
    )


@router.get("/policies", response_model=PoliciesOut, summary="The governance policies")
def get_governance_policies(session: SessionDep) -> PoliciesOut:
    """What imports and endpoints may ask for, and who may deploy: the defaults (nothing
    limited; admins and editors deploy) until an admin sets them. Any role reads them."""
    return PoliciesOut.model_validate(governance.get_policies(session))


@router.put("/policies", response_model=PoliciesOut, summary="Set the governance policies")
def set_governance_policies(body: PoliciesIn, session: SessionDep, request: Request) -> PoliciesOut:
    """Replace the policies (a section left out is reset to its defaults). They apply to
    requests from now on: what exists already is left as it is. A request that breaks
    one is answered 403 ``policy-violation`` and recorded in the audit log as denied."""
    imports, endpoints = body.to_service()
    policies = governance.set_policies(session, imports, endpoints)
    add_audit_details(request, version=policies.version)
    return PoliciesOut.model_validate(policies)


@router.get("/prices", response_model=PricesOut, summary="The prices costs are estimated at")
def get_governance_prices(session: SessionDep) -> PricesOut:
    return PricesOut.model_validate(governance.get_prices(session))


@router.put("/prices", response_model=PricesOut, summary="Set the prices")
def set_governance_prices(body: PricesIn, session: SessionDep, request: Request) -> PricesOut:
    """The price of a replica-hour and of a GPU-hour; every cost report, past windows
    included, is estimated at the prices in force when it is asked for."""
    prices = governance.set_prices(session, body.replica_hour, body.gpu_hour, body.currency)
    add_audit_details(request, version=prices.version)
    return PricesOut.model_validate(prices)


@router.get("/costs", response_model=CostReportOut, summary="Estimated costs")
def get_governance_costs(
    session: SessionDep,
    since: Annotated[
        datetime | None,
        Query(description="inclusive; UTC unless an offset; default: 7 days before until"),
    ] = None,
    until: Annotated[
        datetime | None, Query(description="exclusive; UTC unless an offset; default: now")
    ] = None,
    bucket: Annotated[governance.Bucket, Query(description="the series' step")] = (
        governance.Bucket.DAY
    ),
) -> CostReportOut:
    """Replica-hours, GPU-hours and their estimated cost per endpoint and per training
    job in the window, and per bucket (whole UTC hours or days, the first and last
    clipped to the window). Use that is still going on counts up to now. Cost =
    replica-hours x replicaHour + GPU-hours x gpuHour, GPU-hours being hours x replicas x
    GPUs per replica; a training job counts as one replica without GPUs."""
    return CostReportOut.model_validate(
        governance.cost_report(session, since=since, until=until, bucket=bucket)
    )
