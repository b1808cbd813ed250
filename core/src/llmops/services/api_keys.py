"""API keys: random, shown once, stored as a SHA-256 hash (they are high-entropy, so a
slow password hash adds nothing). Requests present them; :mod:`llmops.auth` checks them."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from llmops.db.models import ApiKey, utcnow
from llmops.errors import NotFound
from llmops.services.pagination import Page, paginate

KEY_PREFIX = "llmops"
INITIAL_ADMIN = "initial-admin"
SORTS = {"createdAt": ApiKey.created_at, "name": ApiKey.name}


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"
    JOB = "job"  # a training job's own token, scoped to that job


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    *, session: Session, name: str, role: Role, training_job_id: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; the clear text is returned here and never stored."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
        role=role.value,
        training_job_id=training_job_id,
    )
    session.add(row)
    session.flush()
    return row, key


def list_api_keys(
    *,
    session: Session,
    role: Role | None = None,
    revoked: bool | None = None,
    sort: str = "createdAt",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[ApiKey]:
    stmt: Select[tuple[ApiKey]] = select(ApiKey)
    if role is not None:
        stmt = stmt.where(ApiKey.role == role.value)
    if revoked is not None:
        stmt = stmt.where(
            ApiKey.revoked_at.is_not(None) if revoked else ApiKey.revoked_at.is_(None)
        )
    return paginate(
        session, stmt, sort=sort, columns=SORTS, id_column=ApiKey.id, limit=limit, cursor=cursor
    )


def create_initial_admin_key(*, session: Session) -> tuple[ApiKey, str] | None:
    """An admin key named ``initial-admin`` when no admin key is active, else ``None``:
    a fresh installation can be administered, and one whose admins were all revoked
    can be recovered by whoever can start the server."""
    active = session.scalars(
        select(ApiKey.id)
        .where(ApiKey.role == Role.ADMIN.value, ApiKey.revoked_at.is_(None))
        .limit(1)
    ).first()
    if active is not None:
        return None
    return create_api_key(session=session, name=INITIAL_ADMIN, role=Role.ADMIN)


def revoke_api_key(*, session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return row


def revoke_job_tokens(*, session: Session, training_job_id: str) -> None:
    for row in session.scalars(select(ApiKey).where(ApiKey.training_job_id == training_job_id)):
        if row.revoked_at is None:
            row.revoked_at = utcnow()
