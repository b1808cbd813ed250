"""Pipelines and training jobs through the REST API, run by the local executor."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.testing.waiting import wait_for


def submit(client: TestClient, api: str, stages: list[dict[str, Any]], name: str = "p") -> Any:
    response = client.post(f"{api}/workflows/pipelines", json={"name": name, "stages": stages})
    assert response.status_code == 201, response.text
    return response.json()


def finished(client: TestClient, api: str, pipeline_id: str) -> Any:
    def done() -> Any:
        body = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
        return body if body["status"] in {"succeeded", "failed", "cancelled"} else None

    return wait_for(done)


def test_pipeline_runs_stages_in_dependency_order(
    client: TestClient, api: str, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    step = ["sh", "-c", f'echo "$0" >> {trace}']
    body = submit(
        client,
        api,
        [
            {"name": "a", "command": [*step, "a"]},
            {"name": "b", "command": [*step, "b"], "dependsOn": ["a"]},
            {"name": "c", "command": [*step, "c"], "dependsOn": ["a"]},
            {"name": "d", "command": [*step, "d"], "dependsOn": ["b", "c"]},
        ],
    )
    assert body["provider"] == "local"
    assert body["spec"]["stages"][1]["dependsOn"] == ["a"]
    result = finished(client, api, body["id"])
    assert result["status"] == "succeeded"
    assert {s["name"]: s["state"] for s in result["stages"]} == dict.fromkeys("abcd", "succeeded")
    order = trace.read_text().split()
    assert order[0] == "a"
    assert order[-1] == "d"
    assert set(order[1:3]) == {"b", "c"}


@pytest.mark.parametrize(
    ("stages", "offending"),
    [
        (
            [
                {"name": "a", "command": ["true"], "dependsOn": ["c"]},
                {"name": "b", "command": ["true"], "dependsOn": ["a"]},
                {"name": "c", "command": ["true"], "dependsOn": ["b"]},
            ],
            ["a", "b", "c"],
        ),
        ([{"name": "a", "command": ["true"], "dependsOn": ["ghost"]}], ["a"]),
        ([{"name": "a", "command": ["true"]}, {"name": "a", "command": ["false"]}], ["a"]),
    ],
    ids=["cycle", "unknown-dependency", "duplicate-name"],
)
def test_invalid_dag_is_refused_naming_the_stages_and_nothing_is_stored(
    client: TestClient, api: str, stages: list[dict[str, Any]], offending: list[str]
) -> None:
    response = client.post(f"{api}/workflows/pipelines", json={"name": "bad", "stages": stages})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["stages"] == offending
    assert client.get(f"{api}/workflows/pipelines").json()["items"] == []


def test_failing_stage_is_retried_then_fails_the_pipeline_and_can_be_retried(
    client: TestClient, api: str, tmp_path: Path
) -> None:
    counter = tmp_path / "attempts"
    flag = tmp_path / "healthy"
    script = f"echo x >> {counter}; test -e {flag}"
    body = submit(
        client,
        api,
        [
            {"name": "flaky", "command": ["sh", "-c", script], "retries": 2},
            {"name": "after", "command": ["true"], "dependsOn": ["flaky"]},
        ],
    )
    result = finished(client, api, body["id"])
    assert result["status"] == "failed"
    assert len(counter.read_text().split()) == 3
    states = {s["name"]: s for s in result["stages"]}
    assert states["flaky"]["attempts"] == 3
    assert states["after"]["state"] == "skipped"
    logs = client.get(f"{api}/workflows/pipelines/{body['id']}/logs?stage=flaky").json()
    assert "attempt 3/3" in logs["items"][0]["text"]

    flag.touch()
    retried = client.post(f"{api}/workflows/pipelines/{body['id']}/retry")
    assert retried.status_code == 200
    assert finished(client, api, body["id"])["status"] == "succeeded"


def test_cancel_stops_a_running_stage_quickly(client: TestClient, api: str) -> None:
    body = submit(client, api, [{"name": "long", "command": ["sleep", "60"]}])
    wait_for(
        lambda: (
            client.get(f"{api}/workflows/pipelines/{body['id']}").json()["stages"][0]["state"]
            == "running"
        )
    )
    cancelled = client.post(f"{api}/workflows/pipelines/{body['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelling"
    result = wait_for(
        lambda: (
            (r := client.get(f"{api}/workflows/pipelines/{body['id']}").json())["status"]
            == "cancelled"
            and r
        ),
        timeout=2.0,
    )
    assert result["stages"][0]["state"] == "cancelled"
    again = client.post(f"{api}/workflows/pipelines/{body['id']}/cancel")
    assert again.status_code == 409


def test_list_filters_by_status_and_delete_removes(client: TestClient, api: str) -> None:
    ok = submit(client, api, [{"name": "a", "command": ["true"]}], name="ok")
    bad = submit(client, api, [{"name": "a", "command": ["false"]}], name="bad")
    finished(client, api, ok["id"])
    finished(client, api, bad["id"])
    failed = client.get(f"{api}/workflows/pipelines", params={"status": "failed"}).json()
    assert [p["name"] for p in failed["items"]] == ["bad"]
    assert client.delete(f"{api}/workflows/pipelines/{bad['id']}").status_code == 204
    assert client.get(f"{api}/workflows/pipelines/{bad['id']}").status_code == 404
    assert client.get(f"{api}/workflows/pipelines/nope/logs").status_code == 404


def test_training_job_process_knows_its_job_and_gets_a_scoped_token(
    client: TestClient, api: str, tmp_path: Path
) -> None:
    out = tmp_path / "env.json"
    code = (
        "import json, os, sys; "
        f"json.dump({{k: v for k, v in os.environ.items() if k.startswith('LLMOPS_')}}, "
        f"open({str(out)!r}, 'w'))"
    )
    model = client.post(f"{api}/catalog/models", json={"name": "base"}).json()
    response = client.post(
        f"{api}/training/jobs",
        json={
            "name": "first",
            "modelId": model["id"],
            "command": [sys.executable, "-c", code],
            "hyperparameters": {"lr": 0.001},
        },
    )
    assert response.status_code == 201, response.text
    job = response.json()

    def done() -> Any:
        body = client.get(f"{api}/training/jobs/{job['id']}").json()
        return body if body["status"] == "succeeded" else None

    result = wait_for(done)
    assert result["stages"][0]["name"] == "train"
    env = json.loads(out.read_text())
    assert env["LLMOPS_JOB_ID"] == job["id"]
    assert env["LLMOPS_API_URL"].startswith("http://")
    assert env["LLMOPS_MODEL_ID"] == model["id"]
    assert json.loads(env["LLMOPS_HYPERPARAMETERS"]) == {"lr": 0.001}
    assert env["LLMOPS_JOB_TOKEN"].startswith("llmops_")
    assert "LLMOPS_DATABASE_URL" not in env  # the server's own settings never leak

    platform = client.app.state.platform  # type: ignore[attr-defined]
    from sqlalchemy import select

    from llmops.db.models import ApiKey, WorkflowPipeline
    from llmops.services.api_keys import hash_key

    with platform.transaction() as session:
        key = session.scalars(select(ApiKey).where(ApiKey.training_job_id == job["id"])).one()
        assert key.role == "job"
        assert key.key_hash == hash_key(env["LLMOPS_JOB_TOKEN"])
        assert key.revoked_at is not None  # the token dies with the job
        stored = session.get(WorkflowPipeline, result["pipelineId"])
        assert env["LLMOPS_JOB_TOKEN"] not in json.dumps(stored.spec)

    listed = client.get(f"{api}/training/jobs", params={"modelId": model["id"]}).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]


def test_training_job_needs_exactly_one_of_command_or_stages(client: TestClient, api: str) -> None:
    neither = client.post(f"{api}/training/jobs", json={"name": "x"})
    assert neither.status_code == 422
    both = client.post(
        f"{api}/training/jobs",
        json={"name": "x", "command": ["true"], "stages": [{"name": "a", "command": ["true"]}]},
    )
    assert both.status_code == 422
    unknown_model = client.post(
        f"{api}/training/jobs", json={"name": "x", "command": ["true"], "modelId": "nope"}
    )
    assert unknown_model.status_code == 404
    assert client.get(f"{api}/training/jobs").json()["items"] == []


def test_cancelling_a_training_job_kills_its_process(client: TestClient, api: str) -> None:
    job = client.post(
        f"{api}/training/jobs", json={"name": "long", "command": ["sleep", "60"]}
    ).json()
    wait_for(lambda: client.get(f"{api}/training/jobs/{job['id']}").json()["status"] == "running")
    response = client.post(f"{api}/training/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelling"
    wait_for(
        lambda: client.get(f"{api}/training/jobs/{job['id']}").json()["status"] == "cancelled",
        timeout=3,
    )


def test_local_settings_cannot_change_under_running_stages(client: TestClient, api: str) -> None:
    """New settings rebuild the executor, which would cancel its runs: refused meanwhile."""
    body = submit(client, api, [{"name": "long", "command": ["sleep", "60"]}])
    wait_for(
        lambda: client.get(f"{api}/workflows/pipelines/{body['id']}").json()["status"] == "running"
    )
    refused = client.put(f"{api}/integrations/local/config", json={"settings": {"max_parallel": 2}})
    assert refused.status_code == 409
    assert refused.json()["active"] == 1
    assert client.get(f"{api}/workflows/pipelines/{body['id']}").json()["status"] == "running"

    client.post(f"{api}/workflows/pipelines/{body['id']}/cancel")
    wait_for(
        lambda: (
            client.get(f"{api}/workflows/pipelines/{body['id']}").json()["status"] == "cancelled"
        )
    )
    accepted = client.put(
        f"{api}/integrations/local/config", json={"settings": {"max_parallel": 2}}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["settings"]["max_parallel"] == 2
