"""Failed authentications are limited per source (llmops.api.security.AuthenticationLimiter):
after ``auth_failure_limit`` unknown, malformed or revoked keys within the window, the
source gets 429 with Retry-After for the rest of its block, its new keys are not even
looked up (a right guess looks like a wrong one), one audit entry records the block, and a
key this process accepted before keeps working. On SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from llmops.api.app import create_app
from llmops.api.security import AuthenticationLimiter, limiter, principals, source_of
from llmops.cli import main
from llmops.config import CoreSettings
from llmops.db.models import AuditEntry, IdempotencyRecord
from llmops.services.api_keys import Role, create_api_key, revoke_api_key
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
MODELS = f"{API}/catalog/models"
CHAT = f"{API}/openai/v1/chat/completions"
LIMIT = 5
WINDOW = 60.0
BLOCK = 120.0


def wrong_key() -> str:
    """A key of the right shape that no one was given."""
    return f"llmops_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Limited:
    client: TestClient
    #: the limiter's clock (seconds), moved by the test
    clock: list[float]
    #: SQL statements that read api_keys by a key's hash
    lookups: list[str]

    def key(self, role: str = "admin", name: str = "key") -> tuple[str, str]:
        with self.platform.transaction() as session:
            row, key = create_api_key(session=session, name=name, role=Role(role))
            return row.id, key

    @property
    def platform(self) -> Any:
        return self.client.app.state.platform  # type: ignore[attr-defined]

    def get(self, key: str, client: TestClient | None = None) -> httpx2.Response:
        return (client or self.client).get(MODELS, headers=bearer(key))

    def block(self) -> None:
        """Fail as often as the limit allows: the next attempt is blocked."""
        for _ in range(LIMIT):
            assert self.get(wrong_key()).status_code == 401

    def blocks(self) -> list[AuditEntry]:
        with self.platform.transaction() as session:
            return list(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "block_authentication_source")
                )
            )


@pytest.fixture
def limited(make_settings: Callable[..., CoreSettings]) -> Iterator[Limited]:
    settings = make_settings(
        auth_failure_limit=LIMIT,
        auth_failure_window_seconds=WINDOW,
        auth_block_seconds=BLOCK,
    )
    with TestClient(create_app(settings)) as client:
        platform = client.app.state.platform  # type: ignore[attr-defined]
        lookups: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().startswith("SELECT") and "key_hash = " in statement:
                lookups.append(statement)

        event.listen(platform.engine, "before_cursor_execute", seen)
        clock = [1000.0]
        limiter(platform).clock = lambda: clock[0]
        yield Limited(client, clock, lookups)
        event.remove(platform.engine, "before_cursor_execute", seen)


def test_300_wrong_keys_meet_429_with_retry_after_after_the_limit_and_one_audit_entry(
    limited: Limited,
) -> None:
    statuses = [limited.get(wrong_key()) for _ in range(300)]

    assert [a.status_code for a in statuses[:LIMIT]] == [401] * LIMIT
    refused = statuses[LIMIT:]
    assert {a.status_code for a in refused} == {429}
    assert all(a.headers["content-type"].startswith("application/problem+json") for a in refused)
    assert {a.json()["type"] for a in refused} == {"https://llmops.dev/problems/too-many-requests"}
    assert {int(a.headers["Retry-After"]) for a in refused} == {int(BLOCK)}
    assert len(limited.lookups) == LIMIT  # the blocked attempts were never looked up
    [entry] = limited.blocks()
    assert entry.outcome == "denied"
    assert entry.resource_id == "testclient"
    assert entry.details["source"] == "testclient"
    assert entry.details["failures"] == LIMIT
    assert entry.details["windowSeconds"] == WINDOW
    assert entry.details["blockSeconds"] == BLOCK


def test_retry_after_counts_down_the_rest_of_the_block(limited: Limited) -> None:
    limited.block()
    limited.clock[0] += 100.5

    refused = limited.get(wrong_key())

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "20"  # 19.5 s left, rounded up


def test_a_key_accepted_before_the_block_keeps_working_during_it(limited: Limited) -> None:
    _, admin = limited.key("admin", "console")
    assert limited.get(admin).status_code == 200
    limited.block()
    principals(limited.platform).keys.clear()  # not just the few seconds of the key cache

    kept = limited.get(admin)
    created = limited.client.post(MODELS, json={"name": "still-works"}, headers=bearer(admin))

    assert kept.status_code == 200
    assert created.status_code == 201
    assert limited.get(wrong_key()).status_code == 429


def test_a_remembered_key_that_is_revoked_is_refused_during_the_block(limited: Limited) -> None:
    key_id, editor = limited.key("editor", "script")
    assert limited.get(editor).status_code == 200
    limited.block()
    with limited.platform.transaction() as session:
        revoke_api_key(session=session, key_id=key_id)

    refused = limited.get(editor)

    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


def test_an_unknown_valid_key_presented_during_the_block_gets_429_without_a_lookup(
    limited: Limited,
) -> None:
    limited.block()
    _, fresh = limited.key("admin", "never-presented")  # a right guess, from the blocked source
    looked_up = len(limited.lookups)

    guessed = limited.get(fresh)
    posted = limited.client.post(MODELS, json={"name": "guess"}, headers=bearer(fresh))

    assert guessed.status_code == 429
    assert posted.status_code == 429
    assert posted.json() | {"instance": None} == guessed.json() | {"instance": None}
    assert len(limited.lookups) == looked_up


def test_an_idempotency_key_post_from_a_blocked_source_is_not_looked_up_nor_stored(
    limited: Limited,
) -> None:
    limited.block()
    _, fresh = limited.key("admin", "never-presented")
    looked_up = len(limited.lookups)

    answers = [
        limited.client.post(
            MODELS,
            json={"name": "guess"},
            headers=bearer(key) | {"Idempotency-Key": "probe"},
        )
        for key in (fresh, wrong_key())
    ]

    assert [a.status_code for a in answers] == [429, 429]
    assert len(limited.lookups) == looked_up
    with limited.platform.transaction() as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0


def test_after_the_block_attempts_are_counted_afresh(limited: Limited) -> None:
    limited.block()
    assert limited.get(wrong_key()).status_code == 429
    limited.clock[0] += BLOCK

    after = [limited.get(wrong_key()).status_code for _ in range(LIMIT + 1)]

    assert after == [401] * LIMIT + [429]
    assert len(limited.blocks()) == 2


def test_failures_older_than_the_window_are_forgotten(limited: Limited) -> None:
    for _ in range(LIMIT - 1):
        assert limited.get(wrong_key()).status_code == 401
    limited.clock[0] += WINDOW

    later = [limited.get(wrong_key()).status_code for _ in range(LIMIT - 1)]

    assert later == [401] * (LIMIT - 1)
    assert limited.blocks() == []


def test_malformed_and_revoked_keys_count_as_failures(limited: Limited) -> None:
    key_id, revoked = limited.key("editor", "gone")
    limited.key("admin", "other-admin")
    with limited.platform.transaction() as session:
        revoke_api_key(session=session, key_id=key_id)
    attempts = ["not-a-key", "llmops_short", revoked, "x" * 300, wrong_key()]

    statuses = [limited.get(key).status_code for key in attempts]

    assert statuses == [401] * LIMIT
    assert limited.get(wrong_key()).status_code == 429


def test_requests_without_a_key_are_401_and_do_not_count(limited: Limited) -> None:
    keyless = [limited.client.get(MODELS).status_code for _ in range(3 * LIMIT)]

    assert keyless == [401] * (3 * LIMIT)
    assert limited.get(wrong_key()).status_code == 401
    assert limited.blocks() == []


def test_a_blocked_source_still_gets_public_routes_and_keyless_401s(limited: Limited) -> None:
    limited.block()

    assert limited.client.get("/healthz", headers=bearer(wrong_key())).status_code == 200
    assert limited.client.get(MODELS).status_code == 401


def test_other_sources_are_not_blocked(limited: Limited) -> None:
    limited.block()
    app = limited.client.app
    with TestClient(app, client=("203.0.113.7", 40000)) as other:
        assert limited.get(wrong_key(), other).status_code == 401


def test_the_inference_route_is_limited_too(limited: Limited) -> None:
    _, viewer = limited.key("viewer", "app")

    def chat(key: str) -> httpx2.Response:
        return limited.client.post(CHAT, json={"model": "m", "messages": []}, headers=bearer(key))

    statuses = [chat(wrong_key()) for _ in range(LIMIT + 2)]
    guessed = chat(viewer)

    assert [a.status_code for a in statuses] == [401] * LIMIT + [429, 429]
    assert statuses[-1].headers["Retry-After"] == str(int(BLOCK))
    assert statuses[-1].headers["content-type"].startswith("application/problem+json")
    assert guessed.status_code == 429  # a right key is not checked either
    assert limited.get(wrong_key()).status_code == 429  # one table for every route
    assert len(limited.blocks()) == 1


def test_refused_authentications_are_counted_in_the_metrics(limited: Limited) -> None:
    limited.block()
    limited.get(wrong_key())
    limited.get(wrong_key())

    metrics = limited.client.get("/metrics").text

    assert f'llmops_authentication_refusals_total{{reason="invalid"}} {LIMIT}.0' in metrics
    assert 'llmops_authentication_refusals_total{reason="blocked"} 2.0' in metrics


# -- the limiter on its own ------------------------------------------------------------


def test_the_table_of_sources_stays_bounded() -> None:
    limits = AuthenticationLimiter(limit=3, window=60, block=60, max_sources=100)

    for n in range(5000):
        limits.failed(f"198.51.{n // 256}.{n % 256}")

    assert len(limits) <= 100


def test_a_blocked_source_is_not_evicted_by_many_new_ones() -> None:
    clock = [0.0]
    limits = AuthenticationLimiter(
        limit=2, window=60, block=60, max_sources=100, clock=lambda: clock[0]
    )
    limits.failed("192.0.2.1")
    assert limits.failed("192.0.2.1") is not None

    for n in range(1000):
        limits.failed(f"198.51.{n // 256}.{n % 256}")

    assert limits.blocked_for("192.0.2.1") == 60


def test_the_remembered_keys_stay_bounded() -> None:
    limits = AuthenticationLimiter(limit=3, window=60, block=60, max_keys=50)

    for n in range(500):
        limits.remember(f"{n:064x}")

    assert limits.remembered_keys() <= 50
    assert limits.remembers(f"{499:064x}")
    assert not limits.remembers(f"{0:064x}")


def test_the_addresses_of_one_ipv6_network_are_one_source() -> None:
    def source(host: str) -> str:
        return source_of({"type": "http", "client": (host, 1)})

    assert source("2001:db8:1:2::1") == source("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source("2001:db8:1:3::1") != source("2001:db8:1:2::1")
    assert source("::ffff:192.0.2.1") == "192.0.2.1"
    assert source("192.0.2.1") == "192.0.2.1"
    assert source_of({"type": "http", "client": None}) == "unknown"


# -- behind a reverse proxy ------------------------------------------------------------


@dataclass
class Served:
    url: str
    settings: CoreSettings


@pytest.fixture
def serve(
    make_settings: Callable[..., CoreSettings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Served]]:
    """``serve(**env)``: the app that ``llmops up`` would serve, with the options it gives
    uvicorn, on a free port of 127.0.0.1."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**env: str) -> Served:
        settings = make_settings()
        captured: dict[str, Any] = {}

        def run(app: Any, **options: Any) -> None:
            captured.update(options, app=app)

        monkeypatch.setattr(uvicorn, "run", run)
        variables = {
            "LLMOPS_DATA_DIR": str(settings.data_dir),
            "LLMOPS_DATABASE_URL": settings.resolved_database_url,
            "LLMOPS_PLUGINS": "none",
            "LLMOPS_AUTH_FAILURE_LIMIT": str(LIMIT),
            **env,
        }
        result = CliRunner().invoke(main, ["up"], env=variables, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        app = captured.pop("app")
        captured.update(host="127.0.0.1", port=free_port(), log_level="warning")
        server = uvicorn.Server(uvicorn.Config(app, **captured))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_for(lambda: server.started, what="uvicorn to start")
        return Served(f"http://127.0.0.1:{captured['port']}", settings)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_on_llmops_up_a_forged_x_forwarded_for_is_not_a_new_source(
    serve: Callable[..., Served],
) -> None:
    served = serve()

    with httpx.Client(base_url=served.url) as http:
        statuses = [
            http.get(
                MODELS,
                headers=bearer(wrong_key()) | {"X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(LIMIT + 1)
        ]

    assert statuses == [401] * LIMIT + [429]


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_source(
    serve: Callable[..., Served],
) -> None:
    served = serve(LLMOPS_TRUSTED_PROXIES="127.0.0.1")

    with httpx.Client(base_url=served.url) as http:

        def attempt(client: str) -> int:
            headers = bearer(wrong_key()) | {"X-Forwarded-For": client}
            return http.get(MODELS, headers=headers).status_code

        blocked = [attempt("198.51.100.1") for _ in range(LIMIT + 1)]
        other = attempt("198.51.100.2")

    assert blocked == [401] * LIMIT + [429]
    assert other == 401
