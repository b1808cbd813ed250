"""The tracker's token travels with its own MLflow client, never through the process
environment: every request to a tracking server, its proxied artifacts included, carries
the tracker's token (and none when it has none), whatever MLFLOW_TRACKING_TOKEN says.

A recording proxy in front of the session's MLflow server sees each request's
Authorization header (MLflow's server itself checks none)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from llmops.capabilities.tracking import MetricPoint, RunQuery, RunSpec, RunStatus
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker


@dataclass
class Recorder:
    """What the proxy forwarded: ``(method, path, Authorization or None)`` per request."""

    url: str = ""
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    def paths(self, prefix: str) -> list[str | None]:
        return [auth for _, path, auth in self.seen if path.startswith(prefix)]


@pytest.fixture
def recorder(mlflow_server: MlflowServer) -> Iterator[Recorder]:
    recorder = Recorder()
    lock = threading.Lock()
    upstream = httpx.Client(base_url=mlflow_server.url, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with lock:
                path = self.path.split("?")[0]
                recorder.seen.append((self.command, path, self.headers.get("Authorization")))
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            answer = upstream.request(self.command, self.path, content=body, headers=headers)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="recorder", daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        upstream.close()


def _work(tracker: MlflowTracker, tmp_path: Path) -> None:
    """Every call of the tracker: create a run (its key looked up), log params and
    metrics, read them back, search, log a file and a folder as artifacts, list them, end
    the run."""
    (tmp_path / "notes.txt").write_text("trained")
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text("{}")
    spec = RunSpec(experiment="credentials", run_name="r", idempotency_key=str(tmp_path))
    run = tracker.create_run(spec)
    tracker.log_params(run.run_id, {"lr": "0.1"})
    tracker.log_metrics(run.run_id, [MetricPoint(key="loss", value=0.5, step=1)])
    assert [p.value for p in tracker.metric_history(run.run_id, "loss")] == [0.5]
    assert tracker.search_runs(RunQuery(experiments=["credentials"])).runs
    assert tracker.run_url(run.run_id)
    tracker.log_artifact(run.run_id, tmp_path / "notes.txt")
    tracker.log_artifact(run.run_id, tmp_path / "model")
    listed = {a.path for a in tracker.list_artifacts(run.run_id)}
    assert listed == {"notes.txt", "model"}
    assert [a.path for a in tracker.list_artifacts(run.run_id, "model")] == ["model/config.json"]
    tracker.end_run(run.run_id, RunStatus.FINISHED)


def test_every_request_and_artifact_upload_carries_the_trackers_token_not_the_environments(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "the-environments-token")
    tracker = MlflowTracker(recorder.url, token=SecretStr("the-trackers-token"), request_timeout=5)

    _work(tracker, tmp_path)

    assert recorder.paths("/api/2.0/mlflow/")  # tracking calls
    assert len(recorder.paths("/api/2.0/mlflow-artifacts/")) >= 3  # uploads and listings
    assert {auth for _, _, auth in recorder.seen} == {"Bearer the-trackers-token"}


def test_a_tracker_without_a_token_sends_none_even_when_the_environment_has_one(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "the-environments-token")
    tracker = MlflowTracker(recorder.url, request_timeout=5)

    _work(tracker, tmp_path)

    assert recorder.paths("/api/2.0/mlflow-artifacts/")
    assert {auth for _, _, auth in recorder.seen} == {None}
