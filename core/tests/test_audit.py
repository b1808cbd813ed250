"""The audit log: every write is recorded (who, role, action, resource, request id,
outcome), refused ones too, reads are not, the log filters and pages, and nothing secret
reaches it. On SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmops.api.app import create_app
from llmops.auth import SYSTEM, Principal, current_principal
from llmops.config import CoreSettings
from llmops.db.models import AuditEntry
from llmops.services import audit
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.plugins import PluginInstaller

API = "/llm-ops/v1"
LOGS = f"{API}/governance/audit-logs"
CANARY = "canary-0f3b6a9e55d1-do-not-log"

#: a route that fails on purpose (the log's "failed" outcome for a crash), and one that
#: records what it did in a tool on the caller's behalf
ACTING_PLUGIN = """
from fastapi import APIRouter

import llmops
from llmops.api.deps import SessionDep
from llmops.plugins.info import PluginInfo, PluginSettings
from llmops.services import audit


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="acting", version="1.0.0", display_name="Acting", settings_model=PluginSettings
    )


@llmops.hookimpl
def llmops_api_routes(settings, context):
    router = APIRouter()

    @router.post("/crash")
    def crash_on_purpose():
        raise RuntimeError("boom")

    @router.post("/act")
    def act_in_the_tool(session: SessionDep):
        audit.record(
            session=session,
            action="acting.delete_thing",
            resource_type="tool/things",
            resource_id="t-1",
        )
        return {}

    return router
"""


def entries(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get(LOGS, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def key_of(client: TestClient, role: str, name: str) -> tuple[str, str]:
    """A new key's (id, key)."""
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        row, key = create_api_key(session=session, name=name, role=Role(role))
        return row.id, key


def stored_entries(client: TestClient) -> list[AuditEntry]:
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_a_write_is_recorded_with_who_what_and_how_it_ended(client: TestClient) -> None:
    key_id, key = key_of(client, "editor", "alice")
    auth = {"Authorization": f"Bearer {key}", "X-Request-ID": "req-create-1"}

    created = client.post(f"{API}/catalog/models", json={"name": "m1"}, headers=auth)
    model_id = created.json()["id"]
    updated = client.patch(f"{API}/catalog/models/{model_id}", json={"task": "chat"}, headers=auth)
    duplicate = client.post(f"{API}/catalog/models", json={"name": "m1"}, headers=auth)

    assert created.headers["X-Request-ID"] == "req-create-1"
    assert updated.status_code == 200
    assert duplicate.status_code == 409
    newest, middle, oldest = entries(client, actor="alice")
    assert oldest == {
        "id": oldest["id"],
        "at": oldest["at"],
        "actor": "alice",
        "role": "editor",
        "action": "create_model",
        "resourceType": "catalog/models",
        "resourceId": model_id,
        "requestId": "req-create-1",
        "outcome": "success",
        "details": {
            "method": "POST",
            "path": f"{API}/catalog/models",
            "status": 201,
            "keyId": key_id,
        },
    }
    assert (middle["action"], middle["resourceId"], middle["outcome"]) == (
        "update_model",
        model_id,
        "success",
    )
    assert middle["details"]["status"] == 200
    assert (newest["action"], newest["outcome"], newest["details"]["status"]) == (
        "create_model",
        "failed",
        409,
    )
    assert newest["resourceId"] is None


def test_a_request_id_is_generated_when_none_or_a_strange_one_is_sent(
    client: TestClient,
) -> None:
    generated = client.post(f"{API}/catalog/models", json={"name": "a"})
    strange = client.post(
        f"{API}/catalog/models", json={"name": "b"}, headers={"X-Request-ID": "x" * 65}
    )
    read = client.get(f"{API}/catalog/models", headers={"X-Request-ID": "read-1"})

    assert len(generated.headers["X-Request-ID"]) == 32
    assert strange.headers["X-Request-ID"] != "x" * 65
    assert read.headers["X-Request-ID"] == "read-1"
    ids = {e["requestId"] for e in entries(client, action="create_model")}
    assert ids == {generated.headers["X-Request-ID"], strange.headers["X-Request-ID"]}


def test_refused_writes_are_recorded_as_denied(client: TestClient) -> None:
    viewer_id, viewer = key_of(client, "viewer", "vera")
    revoked_id, revoked = key_of(client, "editor", "gone")
    client.delete(f"{API}/api-keys/{revoked_id}")

    client.post(f"{API}/catalog/models", json={"name": "x"}, headers={"Authorization": ""})
    client.post(
        f"{API}/catalog/models", json={"name": "x"}, headers={"Authorization": f"Bearer {viewer}"}
    )
    client.delete(f"{API}/catalog/models/m-1", headers={"Authorization": f"Bearer {revoked}"})
    client.post(
        f"{API}/catalog/models",
        json={"name": "x"},
        headers={"Authorization": "Bearer llmops_12345678_guessed"},
    )

    denied = entries(client, outcome="denied")
    assert [(e["actor"], e["role"], e["action"], e["details"]["status"]) for e in denied] == [
        ("anonymous", None, "create_model", 401),
        ("gone", "editor", "delete_model", 401),
        ("vera", "viewer", "create_model", 403),
        ("anonymous", None, "create_model", 401),
    ]
    assert denied[1]["resourceId"] == "m-1"
    assert denied[1]["details"]["reason"] == "the API key was revoked"
    assert denied[2]["details"]["keyId"] == viewer_id
    assert "editor" in denied[2]["details"]["reason"]
    assert "guessed" not in json.dumps(denied)


def test_reads_are_not_recorded(client: TestClient) -> None:
    model = client.post(f"{API}/catalog/models", json={"name": "m"}).json()
    before = len(stored_entries(client))

    client.get(f"{API}/catalog/models")
    client.get(f"{API}/catalog/models/{model['id']}")
    client.get(f"{API}/catalog/models/nothing")
    client.get(f"{API}/catalog/models", headers={"Authorization": ""})  # refused read
    client.get(LOGS)
    client.get("/healthz")
    client.post(f"{API}/experiments/search", json={})  # a read sent as POST

    assert len(stored_entries(client)) == before


def test_job_metrics_are_telemetry_but_a_refused_metrics_call_is_recorded(
    client: TestClient,
) -> None:
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        _, token = create_api_key(
            session=session, name="job j1", role=Role.JOB, training_job_id="j1"
        )
    job = {"Authorization": f"Bearer {token}"}
    body = {"metrics": [{"key": "loss", "value": 1.0}]}

    client.post(f"{API}/training/jobs/j1/experiment-run/metrics", json=body, headers=job)
    client.post(f"{API}/training/jobs/j2/experiment-run/metrics", json=body, headers=job)

    [entry] = entries(client, actor="job j1")
    assert (entry["action"], entry["outcome"], entry["resourceId"]) == (
        "log_experiment_metrics",
        "denied",
        "j2",
    )
    assert entry["role"] == "job"


def test_created_sub_resources_are_recorded_against_their_parent(client: TestClient) -> None:
    created = client.post(f"{API}/api-keys", json={"name": "k", "role": "viewer"}).json()
    client.delete(f"{API}/api-keys/{created['id']}")
    client.put(f"{API}/integrations/defaults/tracking", json={"provider": "nothing"})

    deleted, made = entries(client, resourceType="api-keys")
    assert (made["action"], made["resourceId"]) == ("create_api_key", created["id"])
    assert (deleted["action"], deleted["resourceId"]) == ("revoke_api_key", created["id"])
    [default] = entries(client, resourceType="integrations/defaults")
    assert (default["resourceId"], default["outcome"]) == ("tracking", "failed")


@pytest.fixture
def acting_client(
    install: PluginInstaller, make_settings: Callable[..., CoreSettings]
) -> Iterator[TestClient]:
    install("acting", ACTING_PLUGIN)
    app = create_app(make_settings(plugins="acting"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_crash_is_recorded_as_failed(
    acting_client: TestClient, authenticate: Callable[..., str]
) -> None:
    authenticate(acting_client, "editor")
    response = acting_client.post(
        f"{API}/plugins/acting/crash", headers={"X-Request-ID": "crash-1"}
    )
    assert response.status_code == 500
    authenticate(acting_client, "admin")
    [entry] = entries(acting_client, action="crash_on_purpose")
    assert entry["outcome"] == "failed"
    assert entry["details"]["status"] == 500
    assert entry["resourceType"] == "plugins/acting"
    assert entry["requestId"] == "crash-1"


def test_what_a_plugin_records_names_the_caller_and_the_request(
    acting_client: TestClient,
) -> None:
    key_id, key = key_of(acting_client, "editor", "dora")
    response = acting_client.post(
        f"{API}/plugins/acting/act",
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "act-1"},
    )
    assert response.status_code == 200
    _, admin = key_of(acting_client, "admin", "root")
    acting_client.headers["Authorization"] = f"Bearer {admin}"
    [tool] = entries(acting_client, action="acting.delete_thing")
    [route] = entries(acting_client, action="act_in_the_tool")
    for entry in (tool, route):
        assert (entry["actor"], entry["role"], entry["requestId"]) == ("dora", "editor", "act-1")
        assert entry["details"]["keyId"] == key_id
    assert (tool["resourceType"], tool["resourceId"]) == ("tool/things", "t-1")


def test_the_log_filters_and_pages(client: TestClient) -> None:
    _, alice = key_of(client, "editor", "alice")
    _, bob = key_of(client, "editor", "bob")
    models = []
    for n, key in enumerate([alice, bob, alice, bob, alice]):
        response = client.post(
            f"{API}/catalog/models",
            json={"name": f"m{n}"},
            headers={"Authorization": f"Bearer {key}"},
        )
        models.append(response.json()["id"])
    client.post(f"{API}/catalog/datasets", json={"name": "d"})
    everything = entries(client, limit=500)

    assert [e["actor"] for e in entries(client, actor="alice")] == ["alice"] * 3
    assert len(entries(client, action="create_model")) == 5
    assert len(entries(client, resourceType="catalog/datasets")) == 1
    assert [e["resourceId"] for e in entries(client, resourceId=models[3])] == [models[3]]
    assert entries(client, outcome="failed") == []
    assert client.get(LOGS, params={"outcome": "maybe"}).status_code == 422
    ats = [datetime.fromisoformat(e["at"]) for e in everything]
    assert ats == sorted(ats, reverse=True)  # newest first
    middle = ats[3]
    since = entries(client, since=middle.isoformat(), limit=500)
    until = entries(client, until=middle.isoformat(), limit=500)
    assert {e["id"] for e in since} | {e["id"] for e in until} == {e["id"] for e in everything}
    assert not {e["id"] for e in since} & {e["id"] for e in until}
    naive = middle.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert [e["id"] for e in entries(client, since=naive, limit=500)] == [e["id"] for e in since]
    assert entries(client, since=(ats[0] + timedelta(seconds=1)).isoformat()) == []

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(LOGS, params=params).json()
        pages.append(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [e["id"] for page in pages for e in page] == [e["id"] for e in everything]
    assert all(len(page) <= 2 for page in pages)
    oldest_first = [e["id"] for e in entries(client, sort="at", limit=500)]
    assert oldest_first == [e["id"] for e in reversed(everything)]
    bad = client.get(LOGS, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


def test_no_key_no_setting_and_no_body_reaches_the_log(client: TestClient) -> None:
    admin_header = client.headers["Authorization"]
    created = client.post(f"{API}/api-keys", json={"name": CANARY, "role": "editor"}).json()
    new_key = created["key"]
    configured = client.put(
        f"{API}/integrations/local/config", json={"settings": {"note": CANARY, "token": CANARY}}
    )
    refused = client.put(
        f"{API}/integrations/local/config",
        json={"settings": {"password": CANARY}},
        headers={"Authorization": f"Bearer {new_key}"},
    )
    guessed = client.post(
        f"{API}/catalog/models", json={"name": "x"}, headers={"Authorization": f"Bearer {CANARY}"}
    )
    assert configured.status_code in (200, 422)
    assert refused.status_code == 403
    assert guessed.status_code == 401

    rows = stored_entries(client)
    text = json.dumps(
        [[str(getattr(r, c.key)) for c in AuditEntry.__table__.columns] for r in rows]
    )
    actions = [r.action for r in rows]
    assert actions.count("configure_integration") == 2
    assert "create_api_key" in actions
    assert "create_model" in actions
    assert new_key not in text
    assert admin_header.removeprefix("Bearer ") not in text
    # the key's name is the canary too: it may name the actor of its own calls only
    assert CANARY not in json.dumps(
        [r.details for r in rows] + [r.resource_id for r in rows] + [r.resource_type for r in rows]
    )


# -- record(), for code that acts on a user's behalf --------------------------------------


@pytest.fixture
def session(client: TestClient) -> Iterator[Any]:
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        yield session


def test_record_names_the_requests_principal_or_the_system(session: Any) -> None:
    by_system = audit.record(session=session, action="mlflow.sync", resource_type="runs")
    principal = Principal(key_id="k1", name="carol", role=Role.EDITOR)
    token = current_principal.set(principal)
    try:
        by_carol = audit.record(
            session=session,
            action="mlflow.delete_experiment",
            resource_type="experiments",
            resource_id="7",
            details={"tool": "mlflow"},
        )
    finally:
        current_principal.reset(token)

    assert (by_system.actor, by_system.role) == (SYSTEM.name, None)
    assert (by_carol.actor, by_carol.role, by_carol.outcome) == ("carol", "editor", "success")
    assert by_carol.details == {"tool": "mlflow", "keyId": "k1"}
    assert session.scalar(select(func.count()).select_from(AuditEntry)) >= 2
