"""The retry queue (the outbox): writes to tools that wait, and what became of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llmops.api.deps import Cursor, Limit, PlatformDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import ListPage, OperationOut
from llmops.services import operations

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/operations", tags=["operations"])


@router.get("", response_model=ListPage[OperationOut], summary="List queued writes")
def list_operations(
    session: SessionDep,
    status: Annotated[
        str | None, Query(pattern=r"^(pending|running|succeeded|dead|discarded)$")
    ] = None,
    kind: Annotated[str | None, Query(max_length=80)] = None,
    provider: Annotated[str | None, Query(max_length=80)] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=32)] = None,
    sort: Annotated[str, Query(pattern=r"^-?(createdAt|updatedAt)$")] = "-createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[OperationOut]:
    page = operations.list_operations(
        session=session,
        status=status,
        kind=kind,
        provider=provider,
        resource_id=resource_id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return ListPage[OperationOut](
        items=[OperationOut.model_validate(o) for o in page.items], next_cursor=page.next_cursor
    )


@router.get("/{operationId}", response_model=OperationOut, summary="One queued write")
def get_operation(operationId: str, session: SessionDep) -> OperationOut:
    return OperationOut.model_validate(
        operations.get_operation(session=session, operation_id=operationId)
    )


@router.post("/{operationId}/retry", response_model=OperationOut, summary="Retry now")
def retry_operation(operationId: str, platform: PlatformDep) -> OperationOut:
    """A dead (or waiting) write goes back in line at once with a fresh attempt budget."""
    return OperationOut.model_validate(platform.outbox.retry(operationId))


@router.post("/{operationId}/discard", response_model=OperationOut, summary="Give up")
def discard_operation(operationId: str, platform: PlatformDep) -> OperationOut:
    """A pending or dead write is dropped; its resource records that it did not happen."""
    return OperationOut.model_validate(platform.outbox.discard(operationId))
