"""The MLflow exporter: runs by experiment and status on /metrics, counted in the
background so that a scrape never waits on MLflow."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from llmops.api.app import create_app
from llmops.capabilities.tracking import RunSpec, RunStatus
from llmops.config import CoreSettings
from llmops.testing.waiting import wait_for
from llmops_mlflow.metrics import MlflowRunsCollector
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker

if TYPE_CHECKING:  # the fixture's type (conftest.py is not importable under importlib)
    from conftest import FakeMlflow


def _scrape(collector: MlflowRunsCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_runs_are_counted_by_experiment_and_status(mlflow_server: MlflowServer) -> None:
    tracker = MlflowTracker(mlflow_server.url, request_timeout=5)
    experiment = f"metrics-{uuid.uuid4().hex[:8]}"
    runs = [tracker.create_run(RunSpec(experiment=experiment, run_name=f"r{i}")) for i in range(3)]
    tracker.end_run(runs[0].run_id, RunStatus.FINISHED)
    tracker.end_run(runs[1].run_id, RunStatus.FAILED)
    collector = MlflowRunsCollector(tracker)

    collector.refresh()
    text = _scrape(collector)

    assert f'llmops_mlflow_runs{{experiment="{experiment}",status="finished"}} 1.0' in text
    assert f'llmops_mlflow_runs{{experiment="{experiment}",status="failed"}} 1.0' in text
    assert f'llmops_mlflow_runs{{experiment="{experiment}",status="running"}} 1.0' in text
    assert "llmops_mlflow_up 1.0" in text


def test_a_scrape_never_waits_and_mlflow_down_is_reported(tmp_path: Path) -> None:
    # an MLflow that takes the connection and never answers: the count ends only with
    # its 1 s timeout (a refused connection could fail before the first scrape returned)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        collector = MlflowRunsCollector(
            MlflowTracker(f"http://127.0.0.1:{port}", request_timeout=1), max_age=0
        )

        first = _scrape(collector)  # starts the count in the background, answers at once

        assert "llmops_mlflow_up" not in first
        wait_for(lambda: "llmops_mlflow_up 0.0" in _scrape(collector), timeout=30, what="a count")


def test_the_platforms_metrics_include_mlflows(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_MLFLOW__TRACKING_URI", mlflow_server.url)
    app = create_app(CoreSettings(data_dir=tmp_path / "data", plugins="mlflow"), start_worker=False)

    with TestClient(app) as client:
        wait_for(
            lambda: "llmops_mlflow_up 1.0" in client.get("/metrics").text,
            timeout=30,
            what="MLflow's counts on /metrics",
        )


def test_runs_are_counted_in_every_experiment_past_mlflows_first_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    names = [f"paged-{i}" for i in range(5)]
    for name in names:
        tracker.create_run(RunSpec(experiment=name, run_name="r"))
    original = MlflowClient.search_experiments

    def pages_of_two(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        # as if there were thousands of experiments: 6 here (Default too) make 3 pages
        kwargs["max_results"] = min(2, kwargs.get("max_results") or 2)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_experiments", pages_of_two)
    collector = MlflowRunsCollector(tracker)

    collector.refresh()
    text = _scrape(collector)

    for name in names:
        assert f'llmops_mlflow_runs{{experiment="{name}",status="running"}} 1.0' in text
    assert "llmops_mlflow_up 1.0" in text


def test_registering_the_collector_counts_nothing(
    fake_mlflow: FakeMlflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    collected: list[MlflowRunsCollector] = []
    original = MlflowRunsCollector.collect

    def recording_collect(self: MlflowRunsCollector) -> Iterator[GaugeMetricFamily]:
        collected.append(self)  # a collect() would start a count in the background
        return original(self)

    monkeypatch.setattr(MlflowRunsCollector, "collect", recording_collect)
    before = set(threading.enumerate())
    collector = MlflowRunsCollector(MlflowTracker(fake_mlflow.url, request_timeout=2))
    registry = CollectorRegistry()

    registry.register(collector)  # the registry asks for the names: describe(), no count

    assert collected == []
    assert {t.name for t in set(threading.enumerate()) - before} == set()
    assert fake_mlflow.requests == []
    assert "llmops_mlflow_runs" in {m.name for m in collector.describe()}
