"""/metrics counts pipelines per provider: submitted, finished by state, retried, their
durations, how long submissions waited in the outbox, and how old the last known state
of active pipelines is. Each change of state is counted once, by the transaction that
made it: a replayed sync, a redelivered submission, or a second process applying the
same state count nothing; a transaction that rolls back counts nothing either."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from llmops.api.app import create_app
from llmops.capabilities.orchestration import (
    PipelineState,
    PipelineStatus,
    StageState,
    StageStatus,
)
from llmops.config import CoreSettings
from llmops.db.models import Operation, WorkflowPipeline, utcnow
from llmops.platform import Platform
from llmops.services import pipelines
from llmops.testing.plugins import PluginInstaller, orchestrator_plugin
from llmops.testing.waiting import wait_for

PLUGIN = orchestrator_plugin(
    "steady",
    """
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.errors import IntegrationUnavailable
from llmops.testing.plugins import QuietOrchestrator

UP = [True]
#: the state of every run, by idempotency key; the test moves them
RUNS = {}


class Orchestrator(QuietOrchestrator):
    def _status(self, key):
        state = PipelineState(RUNS[key])
        return PipelineStatus(
            external_id=key, state=state,
            stages=[StageStatus(name="a", state=StageState(state.value))],
        )

    def submit(self, spec):
        if not UP[0]:
            raise IntegrationUnavailable("the tool is down")
        RUNS.setdefault(spec.idempotency_key, "running")
        return self._status(spec.idempotency_key)

    def status(self, external_id):
        if not UP[0]:
            raise IntegrationUnavailable("the tool is down")
        return self._status(external_id)
""",
)


def metric(client: TestClient, name: str, **labels: str) -> float | None:
    """One sample of /metrics, or None when it is not there."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def counted(client: TestClient, name: str, **labels: str) -> float:
    return metric(client, name, **labels) or 0.0


def finished_counts(client: TestClient, provider: str) -> dict[str, float]:
    return {
        state: counted(client, "llmops_pipelines_finished_total", provider=provider, state=state)
        for state in ("succeeded", "failed", "cancelled")
    }


def submit(client: TestClient, api: str, command: list[str], **extra: Any) -> Any:
    body = {"name": "p", "stages": [{"name": "a", "command": command}], **extra}
    answer = client.post(f"{api}/workflows/pipelines", json=body)
    assert answer.status_code in {201, 202}, answer.text
    return answer.json()


def wait_state(client: TestClient, api: str, pipeline_id: str, *states: str) -> Any:
    def reached() -> Any:
        body = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
        return body if body["status"] in states else None

    return wait_for(reached, what=f"pipeline {pipeline_id} to be {' or '.join(states)}")


def test_pipelines_on_the_local_executor_are_counted_by_outcome_once_each(
    client: TestClient, api: str, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    ok = submit(client, api, ["true"])
    bad = submit(client, api, ["false"])
    flaky = submit(client, api, ["sh", "-c", f"test -e {marker} || {{ touch {marker}; exit 1; }}"])
    slow = submit(client, api, ["sleep", "30"])
    # the API's reads and the background worker both sync these pipelines meanwhile
    for pipeline in (ok, bad, flaky):
        wait_state(client, api, pipeline["id"], "succeeded", "failed")
    assert wait_state(client, api, flaky["id"], "failed")["status"] == "failed"
    retried = client.post(f"{api}/workflows/pipelines/{flaky['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert wait_state(client, api, flaky["id"], "succeeded", "failed")["status"] == "succeeded"
    wait_state(client, api, slow["id"], "running")
    assert client.post(f"{api}/workflows/pipelines/{slow['id']}/cancel").status_code == 202
    wait_state(client, api, slow["id"], "cancelled")
    for _ in range(3):  # a finished pipeline read again counts nothing more
        for pipeline in (ok, bad, flaky, slow):
            client.get(f"{api}/workflows/pipelines/{pipeline['id']}")

    wait_for(lambda: sum(finished_counts(client, "local").values()) >= 5, what="5 outcomes")
    assert finished_counts(client, "local") == {"succeeded": 2, "failed": 2, "cancelled": 1}
    assert counted(client, "llmops_pipelines_submitted_total", provider="local") == 4
    assert counted(client, "llmops_pipelines_retried_total", provider="local") == 1
    for state, runs in {"succeeded": 2, "failed": 2, "cancelled": 1}.items():
        labels = {"provider": "local", "state": state}
        assert counted(client, "llmops_pipeline_duration_seconds_count", **labels) == runs
    cancelled_after = counted(
        client, "llmops_pipeline_duration_seconds_sum", provider="local", state="cancelled"
    )
    assert 0 < cancelled_after < 30  # from its start until it was cancelled, not 30 s
    assert counted(client, "llmops_pipeline_queue_wait_seconds_count", provider="local") == 4
    # delivered by each request at once
    assert counted(client, "llmops_pipeline_queue_wait_seconds_sum", provider="local") < 10


def test_a_training_jobs_pipeline_is_counted_like_any_other(client: TestClient, api: str) -> None:
    answer = client.post(f"{api}/training/jobs", json={"name": "job", "command": ["true"]})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    wait_for(lambda: client.get(f"{api}/training/jobs/{job_id}").json()["status"] == "succeeded")

    wait_for(lambda: finished_counts(client, "local")["succeeded"] == 1)
    assert counted(client, "llmops_pipelines_submitted_total", provider="local") == 1


@pytest.fixture
def steady(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any]]:
    """A platform without a background worker (the test syncs), on the steady orchestrator."""
    name = install("steady", PLUGIN)
    settings = make_settings(plugins="steady", circuit_failure_threshold=100)
    with TestClient(create_app(settings, start_worker=False)) as client:
        authenticate(client)
        yield client, sys.modules[name]


def platform_of(client: TestClient) -> Platform:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


def succeeded(external_id: str) -> PipelineStatus:
    return PipelineStatus(
        external_id=external_id,
        state=PipelineState.SUCCEEDED,
        stages=[StageStatus(name="a", state=StageState.SUCCEEDED)],
        started_at=utcnow() - timedelta(seconds=42),
        finished_at=utcnow(),
    )


def test_the_same_state_applied_by_two_processes_or_replayed_counts_once(
    steady: tuple[TestClient, Any], api: str
) -> None:
    client, _ = steady
    platform = platform_of(client)
    pipeline = submit(client, api, ["true"], provider="steady")
    assert pipeline["status"] == "running"
    status = succeeded(pipeline["externalId"])

    # two processes read the running pipeline, then each applies the tool's new state
    with platform.sessions() as first, platform.sessions() as second:
        rows = [s.get(WorkflowPipeline, pipeline["id"]) for s in (first, second)]
        assert all(row is not None and row.status == "running" for row in rows)
        for session, row in zip((first, second), rows, strict=True):
            assert row is not None
            pipelines.apply_status(session, row, status)
            session.commit()
    with platform.sessions() as again:  # a replay of the same sync
        row = again.get(WorkflowPipeline, pipeline["id"])
        assert row is not None
        pipelines.apply_status(again, row, status)
        again.commit()
    with platform.sessions() as session:
        pipelines.sync_active(session=session, runtime=platform.runtime)

    assert finished_counts(client, "steady") == {"succeeded": 1, "failed": 0, "cancelled": 0}
    labels = {"provider": "steady", "state": "succeeded"}
    assert counted(client, "llmops_pipeline_duration_seconds_count", **labels) == 1
    assert counted(client, "llmops_pipeline_duration_seconds_sum", **labels) == pytest.approx(
        42, abs=1
    )


def test_a_redelivered_submission_counts_once(steady: tuple[TestClient, Any], api: str) -> None:
    client, tool = steady
    platform = platform_of(client)
    pipeline = submit(client, api, ["true"], provider="steady")
    assert counted(client, "llmops_pipelines_submitted_total", provider="steady") == 1

    # its worker died after the tool took it and the lease ran out: delivered once more
    with platform.transaction() as session:
        session.execute(
            update(Operation)
            .where(Operation.resource_id == pipeline["id"])
            .values(status="running", lease_until=utcnow() - timedelta(seconds=1))
        )
    assert platform.outbox.run_once() == 1

    assert list(tool.RUNS) == [f"pipeline-{pipeline['id']}"]
    assert counted(client, "llmops_pipelines_submitted_total", provider="steady") == 1
    assert counted(client, "llmops_pipeline_queue_wait_seconds_count", provider="steady") == 1


def test_a_transaction_that_rolls_back_counts_nothing(
    steady: tuple[TestClient, Any], api: str
) -> None:
    client, _ = steady
    platform = platform_of(client)
    pipeline = submit(client, api, ["true"], provider="steady")
    with platform.sessions() as session:
        row = session.get(WorkflowPipeline, pipeline["id"])
        assert row is not None
        pipelines.apply_status(session, row, succeeded(pipeline["externalId"]))
        session.flush()
        session.rollback()
    assert finished_counts(client, "steady")["succeeded"] == 0
    assert client.get(f"{api}/workflows/pipelines/{pipeline['id']}").json()["status"] == "running"


def test_queue_wait_is_the_time_a_submission_waited_in_the_outbox(
    steady: tuple[TestClient, Any], api: str
) -> None:
    client, tool = steady
    platform = platform_of(client)
    tool.UP[0] = False
    pipeline = submit(client, api, ["true"], provider="steady")
    assert pipeline["operationId"]
    assert pipeline["degraded"] is True
    assert counted(client, "llmops_pipelines_submitted_total", provider="steady") == 0
    with platform.transaction() as session:  # it has waited 90 s
        session.execute(
            update(WorkflowPipeline)
            .where(WorkflowPipeline.id == pipeline["id"])
            .values(created_at=utcnow() - timedelta(seconds=90))
        )

    tool.UP[0] = True
    platform.outbox.retry(pipeline["operationId"])
    assert platform.outbox.run_once() == 1

    assert counted(client, "llmops_pipelines_submitted_total", provider="steady") == 1
    waited = counted(client, "llmops_pipeline_queue_wait_seconds_sum", provider="steady")
    assert 90 <= waited < 120
    bucket = "llmops_pipeline_queue_wait_seconds_bucket"
    assert counted(client, bucket, provider="steady", le="60.0") == 0
    assert counted(client, bucket, provider="steady", le="300.0") == 1


def test_sync_lag_is_the_age_of_the_oldest_last_known_state_of_active_pipelines(
    steady: tuple[TestClient, Any], api: str
) -> None:
    client, tool = steady
    platform = platform_of(client)
    old = submit(client, api, ["true"], provider="steady")
    submit(client, api, ["true"], provider="steady")
    with platform.transaction() as session:  # the worker last heard of it 120 s ago
        session.execute(
            update(WorkflowPipeline)
            .where(WorkflowPipeline.id == old["id"])
            .values(synced_at=utcnow() - timedelta(seconds=120))
        )

    lag = metric(client, "llmops_pipeline_sync_lag_seconds", provider="steady")
    assert lag is not None
    assert 120 <= lag < 150
    assert metric(client, "llmops_pipelines_active", provider="steady") == 2

    client.get(f"{api}/workflows/pipelines/{old['id']}")  # a read syncs it
    lag = metric(client, "llmops_pipeline_sync_lag_seconds", provider="steady")
    assert lag is not None
    assert lag < 60

    for key in tool.RUNS:
        tool.RUNS[key] = "succeeded"
    with platform.sessions() as session:
        pipelines.sync_active(session=session, runtime=platform.runtime)
    assert metric(client, "llmops_pipeline_sync_lag_seconds", provider="steady") is None
    assert metric(client, "llmops_pipelines_active", provider="steady") is None
    assert finished_counts(client, "steady")["succeeded"] == 2


def test_every_pipeline_metric_on_metrics_is_documented_with_its_labels(
    steady: tuple[TestClient, Any], api: str
) -> None:
    client, tool = steady
    pipeline = submit(client, api, ["true"], provider="steady")
    tool.RUNS[f"pipeline-{pipeline['id']}"] = "failed"
    client.get(f"{api}/workflows/pipelines/{pipeline['id']}")
    assert client.post(f"{api}/workflows/pipelines/{pipeline['id']}/retry").status_code == 200
    submit(client, api, ["true"], provider="steady")  # one left active: the gauges show

    docs = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    families = [
        f
        for f in text_string_to_metric_families(client.get("/metrics").text)
        if f.name.startswith(("llmops_pipeline_", "llmops_pipelines_"))
        and not f.name.endswith("_created")  # the client library's creation timestamps
    ]
    names = {f.name for f in families}
    assert {
        "llmops_pipelines_submitted",
        "llmops_pipelines_finished",
        "llmops_pipelines_retried",
        "llmops_pipeline_duration_seconds",
        "llmops_pipeline_queue_wait_seconds",
        "llmops_pipeline_sync_lag_seconds",
        "llmops_pipelines_active",
    } <= names
    for family in families:
        shown = f"{family.name}_total" if family.type == "counter" else family.name
        [row] = [line for line in docs.splitlines() if line.startswith(f"| `{shown}` |")]
        for sample in family.samples:
            for label in set(sample.labels) - {"le"}:
                assert f"`{label}`" in row, (shown, label)
