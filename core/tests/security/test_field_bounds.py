"""Every string, list and map of a request body is bounded, and an oversized one is
refused at once (422) with nothing stored.

A test walks the OpenAPI document: each string needs a maxLength, each array a maxItems,
each map a maxProperties, a bound on its keys and one on its values (a map of any JSON is
bounded as a whole, ``x-max-json-length``). The concrete cases send a 2 MB value where
the platform once took one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from llmops.api.app import create_app

MB2 = "x" * (2 * 1024 * 1024)

#: Operations whose body is not the platform's to bound field by field: the inference
#: routes forward it as it is to the model server (OpenAI's schema, which the server
#: validates); the gateway refuses one over 8 MiB (llmops.gateway.MAX_BODY_BYTES).
FORWARDED = {
    "openai_chat_completions",
    "openai_completions",
    "openai_embeddings",
    "endpoint_chat_completions",
}


def unbounded(doc: dict[str, Any], schema: Any, path: str = "") -> Iterator[str]:
    """Where ``schema`` lets a body grow without a limit, as "path: what is missing"."""
    if schema is True or schema == {}:
        yield f"{path}: any JSON, unbounded"
        return
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from unbounded(doc, branch, path)
    if any(key in schema for key in ("anyOf", "oneOf", "allOf")) and "type" not in schema:
        return
    kind = schema.get("type")
    if kind == "string":
        # an enum's strings, a date-time's grammar and an upload's limit bound these
        bounded = {"maxLength", "enum", "const", "contentMediaType"} & schema.keys()
        if not bounded and schema.get("format") not in {"date-time", "binary"}:
            yield f"{path}: string without maxLength"
    elif kind == "array":
        if "maxItems" not in schema:
            yield f"{path}: array without maxItems"
        yield from unbounded(doc, schema.get("items", True), f"{path}[]")
    elif kind == "object":
        for name, prop in schema.get("properties", {}).items():
            yield from unbounded(doc, prop, f"{path}.{name}")
        extra = schema.get("additionalProperties", False)
        if extra is False:
            return
        if "maxProperties" not in schema:
            yield f"{path}: map without maxProperties"
        if "maxLength" not in schema.get("propertyNames", {}):
            yield f"{path}: map keys without maxLength"
        if "x-max-json-length" not in schema:
            yield from unbounded(doc, extra, f"{path}{{}}")
    elif kind not in {"integer", "number", "boolean", "null"}:
        yield f"{path}: no type, unbounded"


def request_bodies(doc: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                yield operation["operationId"], f"{method.upper()} {template}", content["schema"]


def test_the_walk_finds_each_kind_of_unbounded_field() -> None:
    doc: dict[str, Any] = {"components": {"schemas": {}}}
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "options": {"type": "object", "additionalProperties": True, "maxProperties": 3},
            "anything": {},
        },
    }

    assert sorted(unbounded(doc, schema)) == [
        ".anything: any JSON, unbounded",
        ".labels: map keys without maxLength",
        ".labels: map without maxProperties",
        ".labels{}: string without maxLength",
        ".name: string without maxLength",
        ".options: map keys without maxLength",
        ".options{}: any JSON, unbounded",
        ".tags: array without maxItems",
    ]


def test_no_request_body_in_the_openapi_document_has_an_unbounded_field() -> None:
    doc = create_app().openapi()
    bodies = list(request_bodies(doc))
    assert FORWARDED <= {operation for operation, _, _ in bodies}  # the list is not stale

    found = [
        f"{route} {finding}"
        for operation, route, schema in bodies
        if operation not in FORWARDED
        for finding in unbounded(doc, schema, "body")
    ]

    assert found == []


def refused(answer: Any, *location: str) -> None:
    """A 422 problem that names ``location`` and does not echo the oversized value."""
    assert answer.status_code == 422, answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    assert len(answer.content) < 8192
    assert ["body", *location] in [
        e["location"][: len(location) + 1] for e in answer.json()["errors"]
    ]


def test_a_2_mb_tag_is_refused_with_422_and_no_model_is_stored(
    client: TestClient, api: str
) -> None:
    answer = client.post(f"{api}/catalog/models", json={"name": "m", "tags": [MB2]})

    refused(answer, "tags", "0")
    assert client.get(f"{api}/catalog/models").json()["items"] == []


def test_a_2_mb_tag_in_an_update_is_refused_and_the_model_keeps_its_tags(
    client: TestClient, api: str
) -> None:
    model = client.post(f"{api}/catalog/models", json={"name": "m", "tags": ["chat"]}).json()

    answer = client.patch(f"{api}/catalog/models/{model['id']}", json={"tags": ["chat", MB2]})

    refused(answer, "tags", "1")
    assert client.get(f"{api}/catalog/models/{model['id']}").json()["tags"] == ["chat"]


def test_labels_follow_kubernetes_limits_for_values_and_keys(client: TestClient, api: str) -> None:
    def create(name: str, labels: dict[str, str]) -> Any:
        return client.post(f"{api}/catalog/models", json={"name": name, "labels": labels})

    assert create("ok", {"team": "a" * 63, f"{'d' * 253}/{'n' * 63}": "v"}).status_code == 201

    refused(create("m1", {"team": "a" * 64}), "labels", "team")
    refused(create("m2", {MB2: "v"}), "labels")
    refused(create("m3", {f"k{i}": "v" for i in range(65)}), "labels")
    assert [m["name"] for m in client.get(f"{api}/catalog/models").json()["items"]] == ["ok"]


def test_a_2_mb_environment_value_or_argument_makes_no_pipeline(
    client: TestClient, api: str
) -> None:
    stage = {"name": "a", "command": ["true"]}
    for bad, location in (
        ({**stage, "env": {"BIG": MB2}}, ("stages", "0", "env", "BIG")),
        ({**stage, "command": ["echo", MB2]}, ("stages", "0", "command", "1")),
        ({**stage, "workingDir": MB2}, ("stages", "0", "workingDir")),
        ({**stage, "dependsOn": [MB2]}, ("stages", "0", "dependsOn", "0")),
    ):
        answer = client.post(f"{api}/workflows/pipelines", json={"name": "p", "stages": [bad]})
        refused(answer, *location)
    refused(
        client.post(f"{api}/workflows/pipelines", json={"name": MB2, "stages": [stage]}), "name"
    )

    assert client.get(f"{api}/workflows/pipelines").json()["items"] == []


def test_a_map_of_any_json_is_bounded_as_a_whole(client: TestClient, api: str) -> None:
    nested = {"layers": [{"note": "x" * 1000} for _ in range(100)]}  # ~100 KB in one value

    answer = client.post(
        f"{api}/training/jobs", json={"name": "j", "command": ["true"], "hyperparameters": nested}
    )

    refused(answer, "hyperparameters")
    assert "65536 characters as JSON" in answer.json()["detail"]
    assert client.get(f"{api}/training/jobs").json()["items"] == []


def test_a_training_jobs_name_leaves_room_for_its_pipelines_prefix(
    client: TestClient, api: str
) -> None:
    # its pipeline is "training-<name>", which may have 200 characters
    def create(name: str) -> Any:
        return client.post(f"{api}/training/jobs", json={"name": name, "command": ["true"]})

    refused(create("a" * 192), "name")
    assert create("a" * 191).status_code == 201


def test_a_pipeline_shows_stored_values_longer_than_a_caller_may_send(
    client: TestClient, api: str
) -> None:
    # the job's stage gets LLMOPS_HYPERPARAMETERS, ~40 KB here: above a caller's env value
    hyperparameters = {f"h{i}": "x" * 400 for i in range(100)}
    job = client.post(
        f"{api}/training/jobs",
        json={"name": "j", "command": ["true"], "hyperparameters": hyperparameters},
    )
    assert job.status_code == 201, job.text

    pipeline = client.get(f"{api}/workflows/pipelines/{job.json()['pipelineId']}")

    assert pipeline.status_code == 200, pipeline.text
    env = pipeline.json()["spec"]["stages"][0]["env"]
    assert len(env["LLMOPS_HYPERPARAMETERS"]) > 32 * 1024


def test_a_2_mb_setting_is_refused_and_nothing_is_stored(platform: TestClient, api: str) -> None:
    before = platform.get(f"{api}/integrations/example").json()["settings"]

    answer = platform.put(f"{api}/integrations/example/config", json={"settings": {"note": MB2}})

    refused(answer, "settings")
    assert platform.get(f"{api}/integrations/example").json()["settings"] == before
