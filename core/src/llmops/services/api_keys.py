"""API keys: random, shown once, stored as a SHA-256 hash (they are high-entropy, so a
slow password hash adds nothing). Authentication itself lands in core-2."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.db.models import ApiKey, utcnow
from llmops.errors import NotFound

KEY_PREFIX = "llmops"


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


def list_api_keys(*, session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


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
