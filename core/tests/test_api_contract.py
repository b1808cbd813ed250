"""The API's contract: stable operation ids, problem+json errors, the spec's routes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.testing.waiting import wait_for

SPEC_ROUTES = {
    ("get", "/llm-ops/v1/training/jobs/{jobId}/experiment-run"),
    ("post", "/llm-ops/v1/training/jobs/{jobId}/experiment-run"),
    ("post", "/llm-ops/v1/training/jobs/{jobId}/experiment-run/metrics"),
    ("post", "/llm-ops/v1/experiments/search"),
    ("get", "/llm-ops/v1/serving/endpoints/{endpointId}/deployment"),
    ("patch", "/llm-ops/v1/serving/endpoints/{endpointId}/deployment"),
    ("get", "/llm-ops/v1/serving/frameworks"),
    ("post", "/llm-ops/v1/workflows/pipelines"),
    ("get", "/llm-ops/v1/workflows/pipelines/{pipelineId}"),
    ("delete", "/llm-ops/v1/workflows/pipelines/{pipelineId}"),
}


def operations() -> list[tuple[str, str, dict[str, object]]]:
    document = create_app().openapi()
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_has_a_unique_stable_id() -> None:
    ids = [str(op["operationId"]) for _, _, op in operations()]
    assert len(ids) == len(set(ids))
    assert all(i.isidentifier() and i == i.lower() for i in ids)


def test_the_specs_routes_exist() -> None:
    present = {(method, path) for method, path, _ in operations()}
    assert present >= SPEC_ROUTES


#: Inference routes follow OpenAI's wire format, errors included ({"error": {...}}).
OPENAI_SHAPED = ("/llm-ops/v1/openai/", "/llm-ops/v1/serving/endpoints/{endpointId}/chat/")


def test_errors_are_documented_as_problem_json() -> None:
    for method, path, operation in operations():
        if not path.startswith("/llm-ops/v1"):
            continue
        responses = operation["responses"]
        assert isinstance(responses, dict)
        if path.startswith(OPENAI_SHAPED) and method == "post":
            error = responses["400"]["content"]["application/json"]["schema"]
            assert error["required"] == ["error"], path
            continue
        assert "application/problem+json" in responses["422"]["content"], path


def test_json_bodies_are_camel_case() -> None:
    schemas = create_app().openapi()["components"]["schemas"]
    for name, schema in schemas.items():
        for field in schema.get("properties", {}):
            assert "_" not in field, f"{name}.{field}"


def test_serving_and_tracking_routes_say_which_capability_is_missing(
    client: TestClient, api: str
) -> None:
    assert client.get(f"{api}/serving/frameworks").json() == []
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///m"}).json()
    created = client.post(f"{api}/serving/endpoints", json={"name": "chat", "modelId": model["id"]})
    assert created.status_code == 409
    assert created.headers["content-type"] == "application/problem+json"
    assert created.json()["type"].endswith("/no-provider-enabled")
    assert created.json()["capability"] == "serving"
    assert client.get(f"{api}/serving/endpoints").json()["items"] == []
    search = client.post(f"{api}/experiments/search", json={})
    assert search.status_code == 409
    assert search.json()["capability"] == "tracking"


def test_unknown_routes_and_methods_answer_problem_json(client: TestClient, api: str) -> None:
    missing = client.get(f"{api}/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = client.put(f"{api}/catalog/models")
    assert wrong.status_code == 405
    assert wrong.json()["status"] == 405


def first_health_round(client: TestClient) -> None:
    """Health answers from background checks: wait for their first round."""
    checker = client.app.state.platform.health  # type: ignore[attr-defined]
    wait_for(lambda: checker.rounds >= 1, what="the first background health round")


def test_probes_and_metrics(client: TestClient, api: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.get(f"{api}/catalog/models")
    first_health_round(client)
    text = client.get("/metrics").text
    assert 'route="/llm-ops/v1/catalog/models"' in text
    assert "llmops_plugin_enabled" in text
    assert (
        'llmops_integration_up{capability="orchestration",plugin="local",provider="local"} 1.0'
        in text
    )
    health = client.get(f"{api}/health").json()
    local = [i for i in health["integrations"] if i["plugin"] == "local"]
    assert local
    assert local[0]["status"] == "ok"
    assert local[0]["latencyMs"] is not None


def test_integrations_list_shows_each_providers_health(client: TestClient, api: str) -> None:
    first_health_round(client)
    items = client.get(f"{api}/integrations").json()["items"]
    local = next(i for i in items if i["name"] == "local")
    assert [(h["capability"], h["status"]) for h in local["health"]] == [("orchestration", "ok")]
    assert local["health"][0]["latencyMs"] is not None


def test_a_database_deadlock_is_a_retryable_503_not_a_500(
    client: TestClient, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from llmops.services import catalog

    def deadlocked(**_: object) -> None:
        raise OperationalError("UPDATE models", {}, Exception("deadlock detected"))

    monkeypatch.setattr(catalog, "list_models", deadlocked)
    response = client.get(f"{api}/catalog/models")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["type"].endswith("/database-busy")
