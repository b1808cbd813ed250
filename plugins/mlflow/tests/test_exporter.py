"""The MLflow exporter on the platform's /metrics: the metric points MLflow accepted
(``llmops_mlflow_metric_points_total``, from the platform and from jobs through the
tracker proxy), runs by status after real calls through the plugin, the guard's latency
of those calls, and a scrape that answers at once, with the last counts, while MLflow
hangs."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmops.api.app import create_app
from llmops.capabilities.tracking import MetricPoint, RunSpec, RunStatus, TrackerRequest
from llmops.config import CoreSettings
from llmops.errors import LlmopsError
from llmops.testing.waiting import wait_for
from llmops_mlflow.metrics import MlflowRunsCollector
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


def _scrape(collector: MlflowRunsCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _points(n: int, key: str = "loss") -> list[MetricPoint]:
    now = datetime.now(UTC)
    return [MetricPoint(key=key, value=1.0 / (i + 1), step=i, timestamp=now) for i in range(n)]


@pytest.fixture
def platform(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The platform with the MLflow plugin on the session's server (no worker)."""
    monkeypatch.setenv("LLMOPS_MLFLOW__TRACKING_URI", mlflow_server.url)
    settings = CoreSettings(data_dir=tmp_path / "data", plugins="mlflow")
    with TestClient(create_app(settings, start_worker=False)) as client:
        yield client


def test_calls_through_the_plugin_show_on_the_platforms_metrics(platform: TestClient) -> None:
    runtime = platform.app.state.platform.runtime  # type: ignore[attr-defined]
    _, tracker = runtime.tracking_provider()  # the plugin's tracker behind its guard
    experiment = f"exporter-{uuid.uuid4().hex[:8]}"
    done = tracker.create_run(RunSpec(experiment=experiment, run_name="done"))
    failed = tracker.create_run(RunSpec(experiment=experiment, run_name="failed"))
    tracker.create_run(RunSpec(experiment=experiment, run_name="running"))
    tracker.log_metrics(done.run_id, _points(3) + _points(2, key="accuracy"))
    tracker.log_metrics(failed.run_id, _points(4))
    tracker.end_run(done.run_id, RunStatus.FINISHED)
    tracker.end_run(failed.run_id, RunStatus.FAILED)

    def counted() -> str | None:
        text = platform.get("/metrics").text  # the first scrape starts the count
        runs = "llmops_mlflow_runs"
        if _value(text, runs, experiment=experiment, status="finished") is None:
            return None
        return text

    text = wait_for(counted, timeout=30, interval=0.2, what="the runs counted on /metrics")

    assert _value(text, "llmops_mlflow_runs", experiment=experiment, status="finished") == 1
    assert _value(text, "llmops_mlflow_runs", experiment=experiment, status="failed") == 1
    assert _value(text, "llmops_mlflow_runs", experiment=experiment, status="running") == 1
    assert _value(text, "llmops_mlflow_up") == 1
    # a fresh tracker: exactly the points it sent, none from a job
    assert _value(text, "llmops_mlflow_metric_points_total", source="platform") == 9
    assert _value(text, "llmops_mlflow_metric_points_total", source="job") == 0
    # the latency of tracking calls is the guard's, by operation
    latency = "llmops_integration_call_duration_seconds_count"
    labels = {"plugin": "mlflow", "capability": "tracking"}
    assert _value(text, latency, operation="log_metrics", **labels) == 2
    assert _value(text, latency, operation="end_run", **labels) == 2
    assert (_value(text, "llmops_mlflow_count_age_seconds") or 0.0) >= 0


def test_points_mlflow_refused_are_not_counted(mlflow_server: MlflowServer) -> None:
    tracker = MlflowTracker(mlflow_server.url, request_timeout=5)
    run = tracker.create_run(RunSpec(experiment=f"refused-{uuid.uuid4().hex[:8]}", run_name="r"))
    tracker.log_metrics(run.run_id, _points(2))

    with pytest.raises(LlmopsError):
        tracker.log_metrics(uuid.uuid4().hex, _points(5))  # no such run

    text = _scrape(MlflowRunsCollector(tracker))
    assert _value(text, "llmops_mlflow_metric_points_total", source="platform") == 2


def test_points_a_job_logs_through_the_proxy_are_counted(mlflow_server: MlflowServer) -> None:
    tracker = MlflowTracker(mlflow_server.url, request_timeout=5)
    experiment = f"proxied-{uuid.uuid4().hex[:8]}"
    own = tracker.create_run(RunSpec(experiment=experiment, run_name="own")).run_id
    other = tracker.create_run(RunSpec(experiment=experiment, run_name="other")).run_id
    now = int(time.time() * 1000)

    def post(path: str, body: dict[str, object]) -> int:
        request = TrackerRequest(method="POST", path=f"api/2.0/mlflow/{path}", body=body)
        return tracker.job_request(own, request).status

    metrics = [{"key": "loss", "value": 0.5, "timestamp": now, "step": i} for i in range(3)]
    assert post("runs/log-batch", {"run_id": own, "metrics": metrics}) == 200
    assert (
        post("runs/log-metric", {"run_id": own, "key": "lr", "value": 0.1, "timestamp": now}) == 200
    )
    assert post("runs/log-parameter", {"run_id": own, "key": "p", "value": "1"}) == 200
    # another run's: refused by the proxy, nothing reached MLflow
    assert post("runs/log-batch", {"run_id": other, "metrics": metrics}) == 403

    text = _scrape(MlflowRunsCollector(tracker))
    assert _value(text, "llmops_mlflow_metric_points_total", source="job") == 4
    assert _value(text, "llmops_mlflow_metric_points_total", source="platform") == 0
    history = tracker.metric_history(own, "loss")
    assert len(history) == 3


@pytest.fixture
def hung_mlflow() -> Iterator[str]:
    """A server that takes connections and never answers: a hung MLflow."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # never accepted: the requests wait in the backlog
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_scrape_answers_at_once_with_the_last_counts_while_mlflow_hangs(
    mlflow_server: MlflowServer, hung_mlflow: str
) -> None:
    tracker = MlflowTracker(mlflow_server.url, request_timeout=5)
    experiment = f"hung-{uuid.uuid4().hex[:8]}"
    run = tracker.create_run(RunSpec(experiment=experiment, run_name="r"))
    tracker.end_run(run.run_id, RunStatus.FINISHED)
    collector = MlflowRunsCollector(tracker, max_age=0)
    collector.refresh()
    # from now on every count goes to a server that never answers
    collector.tracker = MlflowTracker(hung_mlflow, request_timeout=5)

    def age(text: str) -> float:
        return _value(text, "llmops_mlflow_count_age_seconds") or 0.0

    texts: list[str] = []
    slowest = 0.0
    for _ in range(5):
        started = time.perf_counter()
        texts.append(_scrape(collector))  # each starts a count unless one is under way
        slowest = max(slowest, time.perf_counter() - started)
        last = age(texts[-1])
        # the next scrape once the served counts have aged a fifth of a second more
        wait_for(lambda last=last: age(_scrape(collector)) >= last + 0.2, timeout=10, interval=0.02)

    assert slowest < 0.5, f"a scrape waited {slowest:.2f} s on a hung MLflow"
    assert collector._refreshing  # the count is still waiting on MLflow
    for text in texts:  # the last counts, as MLflow answered them
        assert _value(text, "llmops_mlflow_runs", experiment=experiment, status="finished") == 1
        assert _value(text, "llmops_mlflow_up") == 1
    ages = [_value(text, "llmops_mlflow_count_age_seconds") or 0.0 for text in texts]
    assert ages == sorted(ages)  # the counts grow old
    assert ages[-1] - ages[0] >= 0.7
