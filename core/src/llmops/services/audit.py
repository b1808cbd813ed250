"""The audit log: who did what to which resource, when, and how it ended.

The API records every write itself (see :mod:`llmops.api.security`). Code that acts on
a user's behalf outside a route's own effect, such as a plugin changing something in its
tool, calls :func:`record`; the actor is then the principal of the request in progress,
or :data:`~llmops.auth.SYSTEM` when there is none.

Entries never hold request bodies, keys or settings: ``details`` is for the method, the
status, the path and why a request was refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from llmops.auth import SYSTEM, Principal, current_principal, current_request_id
from llmops.db.models import AuditEntry
from llmops.services.pagination import Page, paginate

SORTS = {"at": AuditEntry.at}


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"  # 401 or 403: the caller had no right to try
    FAILED = "failed"  # any other error


def outcome_of(status: int) -> Outcome:
    if status in (401, 403):
        return Outcome.DENIED
    return Outcome.SUCCESS if status < 400 else Outcome.FAILED


def record(
    *,
    session: Session,
    action: str,
    resource_type: str | None = None,
    resource_id: str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
    principal: Principal | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """Add one entry to ``session``'s transaction.

    :param action: what was done, a route's operation id (``create_model``) or a verb of
        the caller's own (``mlflow.delete_experiment``)
    :param principal: who did it; default: the request's principal, else ``SYSTEM``
    :param request_id: default: the request's id, when there is a request
    """
    who = principal or current_principal.get() or SYSTEM
    details = dict(details or {})
    if who.key_id is not None:
        details.setdefault("keyId", who.key_id)
    entry = AuditEntry(  # cut to the columns' sizes: an entry is never refused for length
        actor=who.name[:200],
        role=who.role.value if who.role else None,
        action=action[:100],
        resource_type=resource_type[:40] if resource_type else None,
        resource_id=resource_id[:200] if resource_id else None,
        request_id=(request_id or current_request_id.get() or "")[:64] or None,
        outcome=outcome.value,
        details=details,
    )
    session.add(entry)
    session.flush()
    return entry


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def list_entries(
    *,
    session: Session,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    outcome: Outcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: str = "-at",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[AuditEntry]:
    """Entries newest first by default; ``since`` is inclusive, ``until`` exclusive."""
    stmt: Select[tuple[AuditEntry]] = select(AuditEntry)
    if actor is not None:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if resource_type is not None:
        stmt = stmt.where(AuditEntry.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(AuditEntry.resource_id == resource_id)
    if outcome is not None:
        stmt = stmt.where(AuditEntry.outcome == outcome.value)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= _utc(since))
    if until is not None:
        stmt = stmt.where(AuditEntry.at < _utc(until))
    return paginate(
        session,
        stmt,
        sort=sort,
        columns=SORTS,
        id_column=AuditEntry.id,
        limit=limit,
        cursor=cursor,
    )
