"""API keys: random, shown once, stored as a SHA-256 hash (they are high-entropy, so a
slow password hash adds nothing). Requests present them; :mod:`llmops.auth` checks them.

What a key resolves to may be remembered for a few seconds (:class:`KeyCache`), so that a
request does not cost a database round trip. Any committed change to what a key may do
(revoked, its role or job changed, deleted), made through the ORM by any session of this
process, forgets every remembered key at once: the next request looks its key up again.
A change made by another process (another server, ``llmops api-keys revoke`` run
elsewhere) is seen once the remembered entry expires.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, event, inspect, or_, select, update
from sqlalchemy.orm import Session, object_session

from llmops.db.models import ApiKey, utcnow
from llmops.errors import Conflict, NotFound
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


def revoke_api_key(
    *,
    session: Session,
    key_id: str,
    by_key_id: str | None = None,
    keep_an_admin: bool = True,
) -> ApiKey:
    """Revoke a key. ``by_key_id``, the key of the caller, may not be the one revoked
    (sign in with another), and with ``keep_an_admin`` the last active admin key is not
    revoked: the API would have no one left to administer it. The operator's CLI may
    (``keep_an_admin=False``): the next ``llmops up`` then prints a new initial admin key.
    """
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}")
    if row.revoked_at is not None:
        return row
    if by_key_id is not None and key_id == by_key_id:
        raise Conflict(
            "a key cannot revoke itself: revoke it with another admin key", parameter="keyId"
        )
    if keep_an_admin and row.role == Role.ADMIN.value:
        # locked (PostgreSQL), so two admins revoking each other cannot both succeed
        admins = session.scalars(
            select(ApiKey.id)
            .where(ApiKey.role == Role.ADMIN.value, ApiKey.revoked_at.is_(None))
            .with_for_update()
        ).all()
        if list(admins) == [key_id]:
            raise Conflict(
                "the last admin key cannot be revoked: create another admin key first",
                parameter="keyId",
            )
    row.revoked_at = utcnow()
    session.flush()
    return row


def note_use(*, session: Session, key_id: str, at: datetime) -> None:
    """Record that the key was used at ``at``, unless a later use is recorded already."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
        .values(last_used_at=at)
        .execution_options(synchronize_session=False)
    )


def revoke_job_tokens(*, session: Session, training_job_id: str) -> None:
    for row in session.scalars(select(ApiKey).where(ApiKey.training_job_id == training_job_id)):
        if row.revoked_at is None:
            row.revoked_at = utcnow()


# -- remembering keys ------------------------------------------------------------------

#: The columns that decide what a key may do; ``last_used_at`` is bookkeeping.
_RIGHTS = ("key_hash", "role", "revoked_at", "training_job_id", "name")
#: ``Session.info`` flag: this transaction changed a key's rights
_CHANGED = "llmops.api_keys.changed"

T = TypeVar("T")


class KeyChanges:
    """A number that moves whenever a transaction that changed a key's rights commits in
    this process; what was remembered under an older number is stale."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()

    def bump(self) -> None:
        with self._lock:
            self.generation += 1


#: One per process: a key revoked through any session of this process (the API, the
#: command line run in-process, the worker ending a job) must be refused by every
#: platform of the process that remembers it.
KEY_CHANGES = KeyChanges()


def _mark(target: ApiKey) -> None:
    session = object_session(target)
    if session is not None:
        session.info[_CHANGED] = True


def _note_update(_mapper: Any, _connection: Any, target: ApiKey) -> None:
    state = inspect(target)
    if any(state.attrs[name].history.has_changes() for name in _RIGHTS):
        _mark(target)


def _note_delete(_mapper: Any, _connection: Any, target: ApiKey) -> None:
    _mark(target)


def _publish_changes(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        KEY_CHANGES.bump()


def _drop_changes(session: Session) -> None:
    session.info.pop(_CHANGED, None)


event.listen(ApiKey, "after_update", _note_update)
event.listen(ApiKey, "after_delete", _note_delete)
event.listen(Session, "after_commit", _publish_changes)
event.listen(Session, "after_rollback", _drop_changes)


class KeyCache(Generic[T]):
    """What a key resolved to, by the key's hash, for ``ttl`` seconds at most, and only
    while no key's rights changed in this process (:data:`KEY_CHANGES`).

    A caller reads :attr:`generation` *before* looking a key up and passes it to
    :meth:`put`: an answer read while a change was being committed is not kept.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, int, T]] = {}

    @property
    def generation(self) -> int:
        return KEY_CHANGES.generation

    def get(self, key_hash: str) -> T | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, generation, value = entry
        if generation != KEY_CHANGES.generation or expires <= self.clock():
            self._entries.pop(key_hash, None)
            return None
        return value

    def put(self, key_hash: str, value: T, generation: int) -> None:
        if generation != KEY_CHANGES.generation:
            return  # a key changed while this one was looked up: the answer may be stale
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # many distinct keys at once: start over, stay bounded
        self._entries[key_hash] = (self.clock() + self.ttl, generation, value)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
