"""The Argo exporter on the platform's /metrics: workflows by the phase the plugin last
saw them in, submissions, and the Argo Server's API requests (latency, errors), after
real calls through the plugin against the Argo Server double; a scrape answers at once,
with the last phases, while the Argo Server hangs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmops.capabilities.common import HealthStatus
from llmops.capabilities.orchestration import PipelineSpec, PipelineState, PipelineStatus
from llmops.errors import IntegrationUnavailable, LlmopsError
from llmops.testing.argo import ArgoServerDouble
from llmops.testing.contracts import eventually
from llmops.testing.waiting import wait_for
from llmops_argo.metrics import PHASES
from llmops_argo.provider import ArgoOrchestrator

API = "/llm-ops/v1"
PIPELINES = f"{API}/workflows/pipelines"
MakeProvider = Callable[..., ArgoOrchestrator]


def _value(text: str, name: str, **labels: str) -> float | None:
    wanted = dict(labels)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    return None


def _scrape(provider: ArgoOrchestrator) -> str:
    registry = CollectorRegistry()
    registry.register(provider.metrics)
    return generate_latest(registry).decode()


def _phases(text: str) -> dict[str, float | None]:
    return {phase: _value(text, "llmops_argo_workflows", phase=phase) for phase in PHASES}


def _spec(script: str = "exit 0", **fields: Any) -> PipelineSpec:
    stage = {"name": "only", "command": ["sh", "-c", script]}
    return PipelineSpec.model_validate({"name": "exporter", "stages": [stage], **fields})


def _ended(provider: ArgoOrchestrator, external_id: str) -> PipelineStatus:
    def reached() -> PipelineStatus | None:
        status = provider.status(external_id)
        return status if status.state.terminal else None

    return eventually(reached, timeout=30, interval=0.05, what=f"run {external_id}")


def test_pipelines_through_the_platform_show_on_its_metrics(
    platform: TestClient, argo: ArgoServerDouble
) -> None:
    ids = []
    for script in ("exit 0", "exit 0", "exit 3"):
        body = {
            "name": "exporter",
            "provider": "argo",
            "stages": [{"name": "only", "command": ["sh", "-c", script]}],
        }
        response = platform.post(PIPELINES, json=body)
        assert response.status_code in (201, 202), response.text
        ids.append(response.json()["id"])

    def ended() -> list[str] | None:
        states = [platform.get(f"{PIPELINES}/{i}").json()["status"] for i in ids]
        return states if all(s in {"succeeded", "failed"} for s in states) else None

    assert eventually(ended, timeout=30, interval=0.1, what="the pipelines to end") == [
        "succeeded",
        "succeeded",
        "failed",
    ]
    text = platform.get("/metrics").text

    assert _phases(text) == {"Pending": 0, "Running": 0, "Succeeded": 2, "Failed": 1, "Error": 0}
    assert _value(text, "llmops_argo_submissions_total", outcome="created") == 3
    assert _value(text, "llmops_argo_submissions_total", outcome="existing") == 0
    for operation in ("lint", "create"):
        assert (
            _value(text, "llmops_argo_api_requests_total", operation=operation, outcome="ok") == 3
        )
        count = "llmops_argo_api_request_duration_seconds_count"
        assert _value(text, count, operation=operation) == 3
    reads = _value(text, "llmops_argo_api_requests_total", operation="get", outcome="ok")
    assert (reads or 0) >= 3  # the worker's sync read each one
    # the core's count of the same submissions agrees
    assert _value(text, "llmops_pipelines_submitted_total", provider="argo") == 3
    created = [w["metadata"]["name"] for w in argo.workflows()]
    assert len(created) == 3


def test_a_redelivered_submission_and_a_vanished_workflow(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    spec = _spec(idempotency_key="pipeline-exporter")
    first = provider.submit(spec)
    again = provider.submit(spec)  # as a redelivery after a lost answer
    assert again.external_id == first.external_id
    _ended(provider, first.external_id)
    before = _scrape(provider)

    argo.delete_workflow(first.external_id.split("/", 1)[1])
    gone = provider.status(first.external_id)
    after = _scrape(provider)

    assert _value(before, "llmops_argo_submissions_total", outcome="created") == 1
    assert _value(before, "llmops_argo_submissions_total", outcome="existing") == 1
    assert (
        _value(before, "llmops_argo_api_requests_total", operation="create", outcome="Conflict")
        == 1
    )
    assert _phases(before)["Succeeded"] == 1
    assert gone.state is PipelineState.FAILED
    assert _phases(after) == dict.fromkeys(PHASES, 0)  # forgotten once gone
    assert _value(after, "llmops_argo_api_requests_total", operation="get", outcome="NotFound") == 1


def test_argo_down_is_counted_by_the_error_it_became(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    argo.down()
    try:
        with pytest.raises(IntegrationUnavailable):
            provider.status("argo/not-there")
        assert provider.health().status is HealthStatus.DOWN
    finally:
        argo.up()

    text = _scrape(provider)
    failed = "IntegrationUnavailable"
    assert _value(text, "llmops_argo_api_requests_total", operation="get", outcome=failed) == 1
    assert _value(text, "llmops_argo_api_requests_total", operation="probe", outcome=failed) == 1
    assert _value(text, "llmops_argo_api_requests_total", operation="get", outcome="ok") is None


def test_a_scrape_answers_at_once_with_the_last_phases_while_argo_hangs(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    run = provider.submit(_spec())
    _ended(provider, run.external_id)
    argo.slow(2.0)  # every answer of the Argo Server waits 2 s
    outcomes: list[object] = []

    def read() -> None:
        try:
            outcomes.append(provider.status(run.external_id).state)
        except LlmopsError as exc:
            outcomes.append(exc)

    seen = len(argo.requests)
    reading = threading.Thread(target=read, name="argo-read")
    reading.start()
    # the read has reached the Argo Server, which holds its answer
    wait_for(lambda: len(argo.requests) > seen, timeout=10, what="the read to reach Argo")
    started = time.perf_counter()
    text = _scrape(provider)
    took = time.perf_counter() - started
    in_flight = reading.is_alive()
    reading.join(10)

    assert in_flight  # the scrape came while the read waited
    assert took < 0.2, f"a scrape waited {took:.2f} s on a hung Argo Server"
    assert reading.is_alive() is False
    assert outcomes == [PipelineState.SUCCEEDED]
    assert _phases(text)["Succeeded"] == 1  # the last phase seen, served from memory
    after = _scrape(provider)
    slow = _value(
        after, "llmops_argo_api_request_duration_seconds_bucket", operation="get", le="1.0"
    )
    total = _value(after, "llmops_argo_api_request_duration_seconds_count", operation="get")
    assert slow is not None
    assert total is not None
    assert total - slow == 1  # the one read that waited took longer than a second
