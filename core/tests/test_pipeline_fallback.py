"""A pipeline may run on the local executor when its orchestrator is away, only where the
request allowed it (``fallback: "local"``), never for a refusal, and never so that it runs
twice; reads while the orchestrator is away answer the last known state with its age.

The orchestrator is a plugin whose tool calls are real httpx calls: "down" connects to a
port nothing listens on (connection refused), "503" and "403" are the tool's answers,
"timeout" is a read that timed out after the request was sent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller, orchestrator_plugin
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

PLUGIN = orchestrator_plugin(
    "flaky",
    """
import httpx
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.testing.plugins import QuietOrchestrator

#: "up", "down" (connection refused), "503", "403", "timeout"
MODE = ["up"]
CLOSED_PORT = [9]
#: every call that reached the tool: (method, key or external id)
CALLS = []
#: the runs the tool created, by idempotency key
RUNS = {}
STATE = ["running"]
URL = "http://tool.invalid/api/runs"


def _call(method, ref):
    mode = MODE[0]
    if mode == "down":
        httpx.post(f"http://127.0.0.1:{CLOSED_PORT[0]}/api/runs", timeout=2)
    CALLS.append((method, ref))
    request = httpx.Request("POST", URL)
    if mode in {"503", "403"}:
        httpx.Response(int(mode), request=request).raise_for_status()
    if mode == "timeout":
        raise httpx.ReadTimeout("the tool took too long to answer", request=request)


class Orchestrator(QuietOrchestrator):
    def _status(self, run_id, names):
        state = PipelineState(STATE[0])
        stage = StageState.SUCCEEDED if state is PipelineState.SUCCEEDED else StageState.RUNNING
        return PipelineStatus(
            external_id=run_id, state=state,
            stages=[StageStatus(name=n, state=stage) for n in names],
        )

    def submit(self, spec):
        _call("submit", spec.idempotency_key)
        RUNS.setdefault(spec.idempotency_key, [s.name for s in spec.stages])
        return self._status(spec.idempotency_key, RUNS[spec.idempotency_key])

    def status(self, external_id):
        _call("status", external_id)
        return self._status(external_id, RUNS[external_id])
""",
)


@pytest.fixture
def flaky(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any]]:
    """A started platform (worker included) with the flaky orchestrator, and its module."""
    name = install("flaky", PLUGIN)
    settings = make_settings(
        plugins="flaky",
        provider_timeout_seconds=2.0,
        circuit_failure_threshold=3,
        circuit_reset_seconds=60.0,
    )
    with TestClient(create_app(settings)) as client:
        authenticate(client)
        module = sys.modules[name]  # imported when the platform loaded the plugin
        module.CLOSED_PORT[0] = free_port()
        yield client, module


def pipeline(trace: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "p",
        "provider": "flaky",
        "stages": [{"name": "a", "command": ["sh", "-c", f"echo ran >> {trace}"]}],
        **extra,
    }


def finished(client: TestClient, api: str, pipeline_id: str) -> Any:
    def done() -> Any:
        body = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
        return body if body["status"] in {"succeeded", "failed", "cancelled"} else None

    return wait_for(done, what=f"pipeline {pipeline_id} to finish")


def operations_of(client: TestClient, api: str, pipeline_id: str) -> list[Any]:
    items = client.get(f"{api}/operations", params={"resourceId": pipeline_id}).json()["items"]
    return list(items)


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("mode", ["down", "503"], ids=["connection-refused", "tool-answers-503"])
def test_a_pipeline_that_allowed_it_runs_once_on_the_local_executor_when_its_orchestrator_is_down(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path, mode: str
) -> None:
    client, tool = flaky
    tool.MODE[0] = mode
    trace = tmp_path / "trace"
    answer = client.post(f"{api}/workflows/pipelines", json=pipeline(trace, fallback="local"))

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["provider"] == "local"
    assert body["fellBackFrom"] == "flaky"
    assert body["spec"]["fallback"] == "local"
    assert body["degraded"] is True
    assert "running on the local executor instead of flaky" in body["degradedReason"]
    assert ("ConnectError" if mode == "down" else "503") in body["degradedReason"]
    assert "instead of flaky, which was unavailable" in body["message"]

    done = finished(client, api, body["id"])
    assert done["status"] == "succeeded"
    assert done["provider"] == "local"
    assert "instead of flaky, which was unavailable" in done["message"]
    assert trace.read_text() == "ran\n"  # once, on this machine

    [operation] = operations_of(client, api, body["id"])
    assert operation["status"] == "succeeded"
    assert operation["provider"] == "local"
    assert operation["result"]["fellBackFrom"] == "flaky"
    [entry] = client.get(
        f"{api}/governance/audit-logs",
        params={"action": "pipeline.fallback", "resourceId": body["id"]},
    ).json()["items"]
    assert entry["details"]["from"] == "flaky"
    assert entry["details"]["to"] == "local"
    assert entry["actor"] == "test-admin"

    tool.MODE[0] = "up"  # back: nothing is delivered to it later
    client.app.state.platform.outbox.run_once()  # type: ignore[attr-defined]
    assert tool.RUNS == {}
    assert metric(client, "llmops_pipelines_fell_back_total", provider="flaky") == 1
    assert metric(client, "llmops_pipelines_submitted_total", provider="local") == 1
    assert metric(client, "llmops_pipelines_submitted_total", provider="flaky") == 0


def test_without_the_opt_in_the_pipeline_waits_for_its_orchestrator(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path
) -> None:
    client, tool = flaky
    tool.MODE[0] = "down"
    trace = tmp_path / "trace"
    answer = client.post(f"{api}/workflows/pipelines", json=pipeline(trace))

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["provider"] == "flaky"
    assert body["fellBackFrom"] is None
    assert body["degraded"] is True
    assert body["degradedReason"].startswith("queued for retry")
    # the retry queue's depth and its oldest write, on /metrics
    assert metric(client, "llmops_outbox_operations", provider="flaky", status="pending") == 1
    assert metric(client, "llmops_outbox_oldest_pending_seconds", provider="flaky") >= 0
    assert "llmops_outbox_oldest_pending_seconds{" in client.get("/metrics").text

    tool.MODE[0] = "up"
    client.post(f"{api}/operations/{body['operationId']}/retry")
    wait_for(lambda: operations_of(client, api, body["id"])[0]["status"] == "succeeded")
    assert metric(client, "llmops_outbox_operations", provider="flaky", status="pending") == 0
    assert list(tool.RUNS) == [f"pipeline-{body['id']}"]
    assert client.get(f"{api}/workflows/pipelines/{body['id']}").json()["provider"] == "flaky"
    assert not trace.exists()  # nothing ran here


def test_a_refusal_by_the_orchestrator_never_falls_back(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path
) -> None:
    client, tool = flaky
    tool.MODE[0] = "403"
    trace = tmp_path / "trace"
    answer = client.post(f"{api}/workflows/pipelines", json=pipeline(trace, fallback="local"))

    assert answer.status_code == 502, answer.text
    [row] = client.get(f"{api}/workflows/pipelines").json()["items"]
    assert row["provider"] == "flaky"
    assert row["status"] == "failed"
    assert row["fellBackFrom"] is None
    assert not trace.exists()
    audit = client.get(f"{api}/governance/audit-logs", params={"action": "pipeline.fallback"})
    assert audit.json()["items"] == []


def test_after_a_timeout_the_pipeline_waits_for_its_orchestrator_so_that_it_never_runs_twice(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path
) -> None:
    client, tool = flaky
    tool.MODE[0] = "timeout"  # the tool may have created the run before the answer was lost
    trace = tmp_path / "trace"
    answer = client.post(f"{api}/workflows/pipelines", json=pipeline(trace, fallback="local"))

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["provider"] == "flaky"
    assert (
        "not run on the local executor instead: flaky may have received it"
        in (body["degradedReason"])
    )

    # its next attempt finds the tool plainly down: still no fallback after that timeout
    tool.MODE[0] = "down"
    client.post(f"{api}/operations/{body['operationId']}/retry")

    def tried_again() -> Any:
        [operation] = operations_of(client, api, body["id"])
        return operation if operation["attempts"] >= 2 and operation["lastError"] else None

    operation = wait_for(tried_again, what="a second attempt")
    assert "an earlier attempt may have reached flaky" in operation["lastError"]

    tool.MODE[0] = "up"
    client.post(f"{api}/operations/{body['operationId']}/retry")
    wait_for(lambda: operations_of(client, api, body["id"])[0]["status"] == "succeeded")
    assert list(tool.RUNS) == [f"pipeline-{body['id']}"]
    assert client.get(f"{api}/workflows/pipelines/{body['id']}").json()["provider"] == "flaky"
    assert not trace.exists()


def test_with_its_circuit_open_the_pipeline_falls_back_without_a_call_to_the_tool(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path
) -> None:
    client, tool = flaky
    tool.MODE[0] = "503"
    for i in range(3):  # three outages open the circuit
        queued = client.post(f"{api}/workflows/pipelines", json=pipeline(tmp_path / f"q{i}"))
        assert queued.status_code == 202
    health = client.get(f"{api}/health").json()
    assert any(p.get("circuit") == "open" for p in health["integrations"]), health
    calls = len(tool.CALLS)

    trace = tmp_path / "trace"
    answer = client.post(f"{api}/workflows/pipelines", json=pipeline(trace, fallback="local"))

    assert answer.status_code == 201, answer.text
    assert answer.json()["provider"] == "local"
    assert "calls are paused after repeated failures" in answer.json()["degradedReason"]
    assert len(tool.CALLS) == calls  # the guard made no call
    assert finished(client, api, answer.json()["id"])["status"] == "succeeded"
    assert trace.read_text() == "ran\n"


def test_a_training_job_that_allowed_it_runs_on_the_local_executor(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path
) -> None:
    client, tool = flaky
    tool.MODE[0] = "down"
    trace = tmp_path / "trace"
    answer = client.post(
        f"{api}/training/jobs",
        json={
            "name": "job",
            "provider": "flaky",
            "fallback": "local",
            "command": ["sh", "-c", f"echo ran >> {trace}"],
        },
    )

    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["fellBackFrom"] == "flaky"
    assert job["degraded"] is True
    assert "running on the local executor instead of flaky" in job["degradedReason"]

    def ended() -> Any:
        body = client.get(f"{api}/training/jobs/{job['id']}").json()
        return body if body["status"] in {"succeeded", "failed"} else None

    done = wait_for(ended, what="the job to end")
    assert done["status"] == "succeeded"
    assert "instead of flaky, which was unavailable" in done["message"]
    pipeline_row = client.get(f"{api}/workflows/pipelines/{job['pipelineId']}").json()
    assert pipeline_row["provider"] == "local"
    assert trace.read_text() == "ran\n"
    assert tool.RUNS == {}


@pytest.mark.parametrize("fallback", ["argo", "LOCAL", True])
def test_only_the_local_executor_is_a_fallback(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path, fallback: object
) -> None:
    client, _ = flaky
    answer = client.post(f"{api}/workflows/pipelines", json=pipeline(tmp_path, fallback=fallback))
    assert answer.status_code == 422, answer.text
    assert client.get(f"{api}/workflows/pipelines").json()["items"] == []


def test_the_fallback_field_is_documented_in_the_routes_schemas(
    flaky: tuple[TestClient, Any],
) -> None:
    client, _ = flaky
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("PipelineCreate", "TrainingJobCreate"):
        field = schemas[name]["properties"]["fallback"]
        assert {"const": "local", "type": "string"} in field["anyOf"] or {
            "enum": ["local"],
            "type": "string",
        } in field["anyOf"], field
        assert "local executor" in field["description"]


def test_a_read_while_the_orchestrator_is_away_answers_the_last_known_state_with_its_age(
    flaky: tuple[TestClient, Any], api: str, tmp_path: Path
) -> None:
    client, tool = flaky
    submitted = client.post(f"{api}/workflows/pipelines", json=pipeline(tmp_path / "t"))
    assert submitted.status_code == 201, submitted.text
    job = client.post(
        f"{api}/training/jobs", json={"name": "job", "provider": "flaky", "command": ["true"]}
    ).json()
    pipeline_id = submitted.json()["id"]
    live = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
    assert live["degraded"] is False
    assert live["status"] == "running"

    tool.MODE[0] = "down"
    stale = client.get(f"{api}/workflows/pipelines/{pipeline_id}")
    assert stale.status_code == 200
    body = stale.json()
    assert body["degraded"] is True
    assert body["degradedReason"].startswith("showing the last known state: ")
    assert body["status"] == "running"
    assert datetime.fromisoformat(body["syncedAt"]) >= datetime.fromisoformat(live["syncedAt"])
    # its age stays that of the last answer from the tool, however often it is read
    assert (
        client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()["syncedAt"]
        == (body["syncedAt"])
    )

    stale_job = client.get(f"{api}/training/jobs/{job['id']}").json()
    assert stale_job["degraded"] is True
    assert stale_job["degradedReason"].startswith("showing the last known state: ")
    assert stale_job["status"] == "running"
    assert stale_job["syncedAt"] is not None
