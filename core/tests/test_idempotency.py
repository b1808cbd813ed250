"""``Idempotency-Key`` on mutating POSTs: replay, mismatch, scope, and 5xx not kept."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient
from sqlalchemy import select

from llmops.db.models import IdempotencyRecord


def test_the_same_key_and_body_returns_the_first_answer(client: TestClient, api: str) -> None:
    headers = {"Idempotency-Key": "create-m1"}
    first = client.post(f"{api}/catalog/models", json={"name": "m1"}, headers=headers)
    again = client.post(f"{api}/catalog/models", json={"name": "m1"}, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(client.get(f"{api}/catalog/models").json()["items"]) == 1


def test_the_same_key_with_another_body_is_refused(client: TestClient, api: str) -> None:
    headers = {"Idempotency-Key": "k"}
    assert (
        client.post(f"{api}/catalog/models", json={"name": "a"}, headers=headers).status_code == 201
    )
    other = client.post(f"{api}/catalog/models", json={"name": "b"}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert [m["name"] for m in client.get(f"{api}/catalog/models").json()["items"]] == ["a"]


def test_a_refused_request_is_replayed_as_refused(client: TestClient, api: str) -> None:
    headers = {"Idempotency-Key": "bad"}
    first = client.post(f"{api}/catalog/models", json={"name": "../x"}, headers=headers)
    again = client.post(f"{api}/catalog/models", json={"name": "../x"}, headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.json() == first.json()


def test_without_a_key_every_post_runs(client: TestClient, api: str) -> None:
    client.post(f"{api}/catalog/models", json={"name": "x1"})
    second = client.post(f"{api}/catalog/models", json={"name": "x1"})
    assert second.status_code == 409


def test_an_empty_or_huge_key_is_refused(client: TestClient, api: str) -> None:
    for key in (" ", "k" * 201):
        response = client.post(
            f"{api}/catalog/models", json={"name": "y"}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 422
    assert client.get(f"{api}/catalog/models").json()["items"] == []


def test_a_new_api_key_is_never_kept_for_replays(client: TestClient, api: str) -> None:
    """Its answer shows the key once; the key's record holds no copy of it."""
    headers = {"Idempotency-Key": "new-key"}
    first = client.post(f"{api}/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    again = client.post(f"{api}/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    assert first.status_code == 201
    secret = first.json()["key"]
    assert again.status_code == 409
    assert again.json()["type"].endswith("/idempotency-secret-shown-once")
    assert secret not in again.text
    platform = client.app.state.platform  # type: ignore[attr-defined]
    with platform.sessions() as session:
        [record] = session.scalars(select(IdempotencyRecord)).all()
        assert secret not in base64.b64decode(record.response_body or "").decode()
    names = [k["name"] for k in client.get(f"{api}/api-keys").json()["items"]]
    assert names.count("ci") == 1
