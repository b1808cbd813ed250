"""Remembered API keys (llmops.api.security.PrincipalCache): a known key costs no database
round trip, yet a revocation or a role change made in this process applies to the very
next request, an entry expires after its time, and the key's last use is still recorded
(at most once a minute, off the request's path). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from llmops.api.app import create_app
from llmops.api.security import PRINCIPAL_TTL_SECONDS, PrincipalCache, principals
from llmops.config import CoreSettings
from llmops.db.models import ApiKey
from llmops.services.api_keys import KeyCache, Role, create_api_key, revoke_api_key
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
MODELS = f"{API}/catalog/models"


@dataclass
class Platform:
    client: TestClient
    cache: PrincipalCache
    #: SQL statements that read or wrote api_keys, in order
    statements: list[str]
    #: what the remembered keys' clock says (seconds)
    clock: list[float]

    def key(self, role: str, name: str) -> tuple[str, str]:
        with self.client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
            row, key = create_api_key(session=session, name=name, role=Role(role))
            return row.id, key

    def get(self, key: str) -> int:
        return self.client.get(MODELS, headers={"Authorization": f"Bearer {key}"}).status_code

    def create(self, key: str, name: str) -> int:
        answer = self.client.post(
            MODELS, json={"name": name}, headers={"Authorization": f"Bearer {key}"}
        )
        return answer.status_code

    def lookups(self) -> int:
        """Keys looked up by their hash."""
        return sum(s.startswith("SELECT") and "key_hash = " in s for s in self.statements)

    def last_used(self, key_id: str) -> datetime | None:
        with self.client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
            used: datetime | None = session.scalars(
                select(ApiKey.last_used_at).where(ApiKey.id == key_id)
            ).one()
            return used


@pytest.fixture
def platform(make_settings: Callable[..., CoreSettings]) -> Iterator[Platform]:
    with TestClient(create_app(make_settings())) as client:
        state = client.app.state.platform  # type: ignore[attr-defined]
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "api_keys" in statement:
                statements.append(statement.lstrip())

        event.listen(state.engine, "before_cursor_execute", seen)
        clock = [1000.0]
        cache = principals(state)
        cache.keys.clock = lambda: clock[0]
        yield Platform(client, cache, statements, clock)
        event.remove(state.engine, "before_cursor_execute", seen)


def test_a_known_key_is_not_looked_up_again_until_its_entry_expires(platform: Platform) -> None:
    _, key = platform.key("viewer", "reader")

    assert platform.get(key) == 200
    looked_up = platform.lookups()
    assert platform.get(key) == 200
    assert platform.get(key) == 200
    remembered = platform.lookups()
    platform.clock[0] += PRINCIPAL_TTL_SECONDS
    assert platform.get(key) == 200

    assert looked_up == 1
    assert remembered == 1  # no database round trip while the key is remembered
    assert platform.lookups() == 2  # expired: looked up again


def test_a_remembered_key_that_is_revoked_through_the_api_is_refused_at_once(
    platform: Platform,
) -> None:
    _, admin = platform.key("admin", "root")
    victim_id, victim = platform.key("editor", "victim")
    assert platform.get(victim) == 200
    assert platform.get(victim) == 200  # remembered now

    revoked = platform.client.delete(
        f"{API}/api-keys/{victim_id}", headers={"Authorization": f"Bearer {admin}"}
    )

    assert revoked.status_code == 204
    refused = platform.client.get(MODELS, headers={"Authorization": f"Bearer {victim}"})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert platform.get(admin) == 200  # the other keys are looked up again, and still work


def test_a_remembered_key_revoked_by_any_session_of_the_process_is_refused_at_once(
    platform: Platform, make_settings: Callable[..., CoreSettings]
) -> None:
    """As ``llmops api-keys revoke`` run in this process would: its own engine, its own
    session, no request to the API."""
    from llmops.db.session import make_engine, make_session_factory, transaction

    victim_id, victim = platform.key("viewer", "victim")
    assert platform.get(victim) == 200
    assert platform.get(victim) == 200
    engine = make_engine(make_settings().resolved_database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            revoke_api_key(session=session, key_id=victim_id)
    finally:
        engine.dispose()

    assert platform.get(victim) == 401


def test_a_role_change_applies_to_the_next_request(platform: Platform) -> None:
    key_id, key = platform.key("viewer", "promoted")
    assert platform.create(key, "refused") == 403
    assert platform.get(key) == 200  # remembered as a viewer

    with platform.client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        session.get(ApiKey, key_id).role = Role.EDITOR.value
    promoted = platform.create(key, "allowed")
    with platform.client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        session.get(ApiKey, key_id).role = Role.VIEWER.value
    demoted = platform.create(key, "refused-again")

    assert promoted == 201
    assert demoted == 403


def test_a_key_that_is_refused_is_never_remembered(platform: Platform) -> None:
    assert platform.get("llmops_00000000_guessed") == 401
    assert platform.get("llmops_00000000_guessed") == 401

    assert platform.lookups() == 2
    assert len(platform.cache.keys) == 0


def test_the_last_use_of_a_remembered_key_is_written_at_most_once_a_minute(
    platform: Platform,
) -> None:
    key_id, key = platform.key("viewer", "busy")
    assert platform.get(key) == 200  # looked up: the lookup notes the use itself
    first = platform.last_used(key_id)
    assert first is not None
    writes = sum(s.startswith("UPDATE") for s in platform.statements)

    platform.cache.now = lambda: first + timedelta(seconds=30)
    for _ in range(5):
        assert platform.get(key) == 200
    platform.cache.now = lambda: first + timedelta(seconds=61)
    assert platform.get(key) == 200
    assert platform.get(key) == 200
    lookups = platform.lookups()

    wait_for(lambda: platform.last_used(key_id) == first + timedelta(seconds=61))
    assert sum(s.startswith("UPDATE") for s in platform.statements) == writes + 1
    assert lookups == 1


def test_a_key_presented_by_many_requests_at_once_is_looked_up_once(platform: Platform) -> None:
    _, key = platform.key("viewer", "crowd")
    cache = PrincipalCache(platform.client.app.state.platform)  # type: ignore[attr-defined]

    async def crowd() -> list[Any]:
        return await asyncio.gather(*(cache.authenticate(key) for _ in range(20)))

    answers = asyncio.run(crowd())

    assert {a.principal.name for a in answers} == {"crowd"}
    assert platform.lookups() == 1


# -- the cache itself ------------------------------------------------------------------


def test_an_answer_looked_up_while_a_key_changed_is_not_kept(platform: Platform) -> None:
    cache: KeyCache[str] = KeyCache(60)
    generation = cache.generation  # the lookup starts
    key_id, _ = platform.key("viewer", "changing")
    with platform.client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        revoke_api_key(session=session, key_id=key_id)  # commits while it runs

    cache.put("hash", "stale", generation)

    assert cache.get("hash") is None


def test_the_cache_stays_bounded() -> None:
    cache: KeyCache[int] = KeyCache(60, max_entries=3)
    for n in range(7):
        cache.put(f"key-{n}", n, cache.generation)

    assert len(cache) <= 3
    assert cache.get("key-6") == 6
