"""The plugin as the platform loads it: found through its entry point, its settings, the
embedded default (a local SQLite store in its data dir), and MLflow's client capped so
that no request waits on MLflow's own retries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.capabilities.common import HealthStatus
from llmops.capabilities.tracking import RunSpec
from llmops.config import CoreSettings
from llmops.plugins import PluginContext
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.waiting import wait_for
from llmops_mlflow.plugin import MlflowSettings, llmops_plugin_info, llmops_tracking
from llmops_mlflow.testing import MlflowServer

MLFLOW_CLIENT_VARIABLES = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_TRACKING_TOKEN",
)


@pytest.fixture(autouse=True)
def _clean_mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker sets MLflow's client variables for the process: undone after each."""
    for name in MLFLOW_CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _context(tmp_path: Path) -> PluginContext:
    return PluginContext(
        plugin_name="mlflow",
        data_dir=tmp_path / "plugins" / "mlflow",
        api_url="http://127.0.0.1:8000",
        core_version="0.1.0",
    )


def test_without_settings_runs_go_to_a_local_store_in_the_plugins_data_dir(
    tmp_path: Path,
) -> None:
    tracker = llmops_tracking(MlflowSettings(), _context(tmp_path))

    run = tracker.create_run(RunSpec(experiment="local", run_name="first"))

    assert tracker.tracking_uri == f"sqlite:///{tmp_path / 'plugins' / 'mlflow' / 'mlflow.db'}"
    assert (tmp_path / "plugins" / "mlflow" / "mlflow.db").is_file()
    assert run.artifact_uri is not None
    assert run.artifact_uri.startswith((tmp_path / "plugins" / "mlflow" / "artifacts").as_uri())
    assert tracker.run_url(run.run_id) is None  # no UI serves a local store
    assert tracker.health().status is HealthStatus.OK


def test_mlflows_own_retries_are_off_and_its_timeout_is_the_plugins(tmp_path: Path) -> None:
    llmops_tracking(MlflowSettings(request_timeout_seconds=7), _context(tmp_path))

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


def test_an_operator_set_mlflow_retry_budget_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")

    llmops_tracking(MlflowSettings(), _context(tmp_path))

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


def test_a_server_run_links_to_mlflows_ui(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    tracker = llmops_tracking(MlflowSettings(tracking_uri=mlflow_server.url), _context(tmp_path))

    run = tracker.create_run(RunSpec(experiment="linked", run_name="r"))

    assert run.ui_url == f"{mlflow_server.url}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    assert tracker.run_url(run.run_id) == run.ui_url


def test_the_token_is_a_write_only_secret_and_reaches_mlflows_client(tmp_path: Path) -> None:
    schema = MlflowSettings.model_json_schema()["properties"]["token"]
    settings = MlflowSettings.model_validate({"token": "s3cret"})

    llmops_tracking(settings, _context(tmp_path))

    assert "s3cret" not in repr(settings)
    assert any(option.get("writeOnly") for option in schema.get("anyOf", [schema]))
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "s3cret"


def test_the_platform_finds_the_plugin_and_reports_mlflows_health(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_MLFLOW__TRACKING_URI", mlflow_server.url)
    settings = CoreSettings(data_dir=tmp_path / "data", plugins="mlflow")

    app = create_app(settings, start_worker=False)
    with TestClient(app) as client:
        with app.state.platform.transaction() as session:
            _, key = create_api_key(session=session, name="t", role=Role.ADMIN)
        client.headers["Authorization"] = f"Bearer {key}"
        plugin = client.get("/llm-ops/v1/integrations/mlflow").json()
        # "starting" until MLflow's client has loaded in the background
        tested = wait_for(
            lambda: (
                (answer := client.post("/llm-ops/v1/integrations/mlflow/test").json())
                and "starting" not in answer["results"][0]["detail"]
                and answer
            ),
            timeout=30,
            interval=0.2,
            what="MLflow's client to start",
        )

    assert llmops_plugin_info().name == "mlflow"
    assert plugin["loaded"] is True, plugin["error"]
    assert plugin["distribution"] == "llmops-mlflow"
    assert plugin["capabilities"] == ["tracking"]
    assert plugin["settings"]["tracking_uri"] == mlflow_server.url  # the plugin's own names
    assert "token" not in plugin["settings"]
    assert tested["ok"] is True
    [result] = tested["results"]
    assert result["status"] == "ok"
    assert mlflow_server.url in result["detail"]


def test_mlflows_client_starts_in_the_background_and_health_says_starting_until_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from llmops_mlflow import tracker as module

    release = threading.Event()
    original = module.MlflowTracker._start_client

    def slow_start(self: module.MlflowTracker) -> None:
        release.wait(30)  # as if `import mlflow` took this long
        original(self)

    monkeypatch.setattr(module.MlflowTracker, "_start_client", slow_start)
    monkeypatch.setattr(module, "HEALTH_STARTUP_WAIT", 0.05)
    tracker = module.MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")

    starting = tracker.health()
    created: list[str] = []
    call = threading.Thread(
        target=lambda: created.append(
            tracker.create_run(RunSpec(experiment="e", run_name="r")).run_id
        )
    )
    call.start()
    call.join(0.3)
    assert call.is_alive()  # the call waits for the client, it does not fail
    release.set()
    call.join(30)

    assert starting.status is HealthStatus.DEGRADED
    assert "starting" in (starting.detail or "")
    assert len(created) == 1
    assert tracker.health().status is HealthStatus.OK
