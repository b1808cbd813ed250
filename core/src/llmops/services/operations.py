"""The retry queue as administrators see it: list, inspect, retry, discard."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from llmops.db.models import Operation
from llmops.errors import NotFound
from llmops.services.pagination import Page, paginate

SORTS = {"createdAt": Operation.created_at, "updatedAt": Operation.updated_at}


def list_operations(
    *,
    session: Session,
    status: str | None = None,
    kind: str | None = None,
    provider: str | None = None,
    resource_id: str | None = None,
    sort: str = "-createdAt",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Operation]:
    stmt: Select[tuple[Operation]] = select(Operation)
    if status:
        stmt = stmt.where(Operation.status == status)
    if kind:
        stmt = stmt.where(Operation.kind == kind)
    if provider:
        stmt = stmt.where(Operation.provider == provider)
    if resource_id:
        stmt = stmt.where(Operation.resource_id == resource_id)
    return paginate(
        session, stmt, sort=sort, columns=SORTS, id_column=Operation.id, limit=limit, cursor=cursor
    )


def get_operation(*, session: Session, operation_id: str) -> Operation:
    operation = session.get(Operation, operation_id)
    if operation is None:
        raise NotFound(f"no operation with id {operation_id!r}", resource="operation")
    return operation
