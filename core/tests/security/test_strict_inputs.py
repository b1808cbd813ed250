"""Request bodies take JSON's types as they are: a string is no integer, number or boolean.

Lax validation would turn ``"3"`` into 3 and ``"false"`` into False, so a body that breaks
the documented schema would be obeyed. JSON has no date or enum type: an ISO 8601 string
for a date-time and an enum's string stay accepted, and so does an integer for a number.
Besides the concrete cases, one test walks every request body of the OpenAPI document, so
a field added later cannot miss the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from llmops.api.app import create_app

Path = tuple[str, ...]  # property names, "[]" for an array's items, "{}" for a map's values


def problem_errors(answer: Any) -> list[dict[str, Any]]:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    errors: list[dict[str, Any]] = answer.json()["errors"]
    return errors


def test_retries_sent_as_a_string_is_422_and_no_pipeline_is_made(
    client: TestClient, api: str
) -> None:
    body = {"name": "p", "stages": [{"name": "a", "command": ["true"], "retries": "3"}]}

    answer = client.post(f"{api}/workflows/pipelines", json=body)

    errors = problem_errors(answer)
    assert [e["location"] for e in errors] == [["body", "stages", "0", "retries"]]
    assert errors[0]["type"] == "int_type"
    assert client.get(f"{api}/workflows/pipelines").json()["items"] == []


def test_numbers_and_booleans_as_strings_are_refused_where_lax_parsing_would_take_them(
    client: TestClient, api: str
) -> None:
    cases = [
        ("/workflows/pipelines", {"maxParallel": "2"}, ["body", "maxParallel"]),
        ("/workflows/pipelines", {"stages": [{"timeoutSeconds": "1.5"}]}, None),
        ("/training/jobs", {"track": "false"}, ["body", "track"]),
        ("/training/jobs", {"retries": 1.0}, ["body", "retries"]),
        ("/experiments/search", {"pageSize": "10"}, ["body", "pageSize"]),
        ("/serving/endpoints", {"autoscaling": {"maxReplicas": "2"}}, None),
        ("/serving/endpoints", {"requestTimeoutSeconds": "30"}, None),
    ]
    for path, body, location in cases:
        errors = problem_errors(client.post(f"{api}{path}", json=body))
        wanted = location or ["body", *flatten(body)]
        assert wanted in [e["location"] for e in errors], (path, body, errors)


def flatten(body: Any) -> list[str]:
    """The location of a body's single leaf ("stages", "0", "timeoutSeconds")."""
    if isinstance(body, dict):
        ((key, value),) = body.items()
        return [key, *flatten(value)]
    if isinstance(body, list):
        return ["0", *flatten(body[0])]
    return []


def test_enabled_as_the_string_false_is_422_and_the_integration_stays_enabled(
    platform: TestClient, api: str
) -> None:
    assert platform.get(f"{api}/integrations/example").json()["enabled"] is True

    answer = platform.patch(f"{api}/integrations/example", json={"enabled": "false"})

    assert problem_errors(answer)[0]["location"] == ["body", "enabled"]
    assert platform.get(f"{api}/integrations/example").json()["enabled"] is True


def test_an_integer_for_a_number_an_iso_date_time_and_an_enum_string_are_accepted(
    client: TestClient, api: str
) -> None:
    stage = {"name": "a", "command": ["true"], "timeoutSeconds": 30}
    pipeline = client.post(f"{api}/workflows/pipelines", json={"name": "p", "stages": [stage]})
    assert pipeline.status_code == 201, pipeline.text
    assert pipeline.json()["spec"]["stages"][0]["timeoutSeconds"] == 30

    key = client.post(f"{api}/api-keys", json={"name": "ci", "role": "editor"})
    assert key.status_code == 201, key.text
    assert key.json()["role"] == "editor"

    # a valid body reaches the route, which finds no such job
    point = {"key": "loss", "value": 1, "step": 2, "timestamp": "2026-01-02T03:04:05Z"}
    metrics = client.post(
        f"{api}/training/jobs/none/experiment-run/metrics", json={"metrics": [point]}
    )
    assert metrics.status_code == 404, metrics.text


def test_a_date_time_given_as_a_number_is_refused(client: TestClient, api: str) -> None:
    point = {"key": "loss", "value": 1, "timestamp": 1767323045}

    answer = client.post(
        f"{api}/training/jobs/none/experiment-run/metrics", json={"metrics": [point]}
    )

    location = problem_errors(answer)[0]["location"]
    assert location == ["body", "metrics", "0", "timestamp"]


# -- every request body --------------------------------------------------------------


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def leaves(doc: dict[str, Any], schema: dict[str, Any], path: Path = ()) -> Iterator[Any]:
    """(path, schema) of every scalar property a body may carry, through $ref, anyOf,
    arrays and typed maps (depth-first; a model met again on its own path is not)."""
    schema = resolve(doc, schema)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from leaves(doc, branch, path)
    kind = schema.get("type")
    if kind == "object":
        for name, prop in schema.get("properties", {}).items():
            yield from leaves(doc, prop, (*path, name))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            yield from leaves(doc, extra, (*path, "{}"))
    elif kind == "array" and isinstance(schema.get("items"), dict):
        yield from leaves(doc, schema["items"], (*path, "[]"))
    elif kind in {"integer", "number", "boolean", "string"}:
        yield path, schema


def body_with(path: Path, value: Any) -> Any:
    """A body that carries ``value`` at ``path`` and nothing else."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == "[]":
        return [body_with(rest, value)]
    if head == "{}":
        return {"k": body_with(rest, value)}
    return {head: body_with(rest, value)}


def location(path: Path) -> list[str]:
    return ["body", *("0" if p == "[]" else "k" if p == "{}" else p for p in path)]


def json_operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, concrete path, body schema) of each operation that takes a JSON body."""
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                path = re.sub(r"\{[^}]+\}", "x", template)
                yield method, path, content["application/json"]["schema"]


def test_the_walk_finds_the_fields_it_must_check() -> None:
    doc = create_app().openapi()
    found = {
        (path, leaf)
        for _, path, body in json_operations(doc)
        for leaf, schema in leaves(doc, body)
        if schema["type"] != "string"
    }
    assert ("/llm-ops/v1/workflows/pipelines", ("stages", "[]", "retries")) in found
    assert ("/llm-ops/v1/serving/endpoints", ("autoscaling", "minReplicas")) in found
    assert ("/llm-ops/v1/integrations/x", ("enabled",)) in found
    assert len(found) >= 25


def test_every_integer_number_and_boolean_of_every_request_body_refuses_a_string(
    client: TestClient,
) -> None:
    doc = client.app.openapi()  # type: ignore[attr-defined]
    lax: list[str] = []
    for method, path, body in json_operations(doc):
        for leaf, schema in leaves(doc, body):
            if schema["type"] == "string":
                continue
            sample = "true" if schema["type"] == "boolean" else "1"
            answer = client.request(method, path, json=body_with(leaf, sample))
            refused = answer.status_code == 422 and location(leaf) in [
                e["location"] for e in answer.json().get("errors", [])
            ]
            if not refused:
                lax.append(f"{method.upper()} {path} {'.'.join(leaf)}: {answer.status_code}")
    assert lax == []


def test_every_date_time_and_enum_string_of_every_request_body_is_accepted(
    client: TestClient,
) -> None:
    doc = client.app.openapi()  # type: ignore[attr-defined]
    refused: list[str] = []
    for method, path, body in json_operations(doc):
        for leaf, schema in leaves(doc, body):
            if schema.get("format") == "date-time":
                sample: Any = "2026-01-02T03:04:05Z"
            elif "enum" in schema or "const" in schema:
                sample = schema.get("enum", [schema.get("const")])[0]
            else:
                continue
            answer = client.request(method, path, json=body_with(leaf, sample))
            errors = answer.json().get("errors", []) if answer.status_code == 422 else []
            if location(leaf) in [e["location"] for e in errors]:
                refused.append(f"{method.upper()} {path} {'.'.join(leaf)}")
    assert refused == []
