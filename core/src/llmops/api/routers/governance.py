"""Governance: the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from llmops.api.deps import Cursor, Limit, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import ListPage
from llmops.api.schemas_auth import AuditEntryOut
from llmops.services import audit
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
