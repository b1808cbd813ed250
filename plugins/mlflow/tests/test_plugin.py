"""The plugin as the platform loads it: found through its entry point, its settings, the
embedded default (a local SQLite store in its data dir), one tracker for tracking and
metrics, nothing contacted until first use, the platform's migrations lock, and MLflow's
client capped so that no request waits on MLflow's own retries."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

import llmops
from llmops.api.app import create_app
from llmops.capabilities.common import Capability, HealthStatus
from llmops.capabilities.tracking import RunSpec
from llmops.config import CoreSettings
from llmops.observability.health import NOT_CHECKED
from llmops.platform import Platform
from llmops.plugins import PluginContext
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.boundary import ModuleTree, check_plugin
from llmops.testing.waiting import wait_for
from llmops_mlflow.metrics import MlflowRunsCollector
from llmops_mlflow.plugin import (
    MlflowSettings,
    llmops_metrics_collectors,
    llmops_plugin_info,
    llmops_tracking,
)
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker

if TYPE_CHECKING:  # the fixture's type (conftest.py is not importable under importlib)
    from conftest import FakeMlflow

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


def _context(tmp_path: Path, **extra: Any) -> PluginContext:
    return PluginContext(
        plugin_name="mlflow",
        data_dir=tmp_path / "plugins" / "mlflow",
        api_url="http://127.0.0.1:8000",
        core_version="0.1.0",
        **extra,
    )


def _client_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "mlflow-client"}


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


def test_the_token_is_a_write_only_secret_that_reaches_mlflow_but_not_the_environment(
    fake_mlflow: FakeMlflow, tmp_path: Path
) -> None:
    schema = MlflowSettings.model_json_schema()["properties"]["token"]
    settings = MlflowSettings.model_validate({"tracking_uri": fake_mlflow.url, "token": "s3cret"})

    tracker = llmops_tracking(settings, _context(tmp_path))
    wait_for(lambda: tracker.health().status is HealthStatus.OK, timeout=30, what="MLflow")
    tracker.experiments()

    assert "s3cret" not in repr(settings)
    assert any(option.get("writeOnly") for option in schema.get("anyOf", [schema]))
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ  # subprocesses inherit nothing
    assert len(fake_mlflow.authorizations) >= 2
    assert set(fake_mlflow.authorizations) == {"Bearer s3cret"}


def _tested(client: TestClient) -> dict[str, Any]:
    """The integration's connection test, once MLflow's client has started."""

    def started() -> dict[str, Any] | None:
        found: dict[str, Any] = client.post("/llm-ops/v1/integrations/mlflow/test").json()
        return None if "starting" in found["results"][0]["detail"] else found

    answer: dict[str, Any] | None = wait_for(
        started, timeout=30, interval=0.2, what="MLflow's client to start"
    )
    assert answer is not None
    return answer


def test_a_token_removed_from_the_integration_is_sent_no_more_and_was_never_in_the_environment(
    fake_mlflow: FakeMlflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_MLFLOW__TRACKING_URI", fake_mlflow.url)
    # the background health checks run at start and when a setting changes, not between:
    # every request below is made by the provider of the settings of its phase
    settings = CoreSettings(data_dir=tmp_path / "data", plugins="mlflow", health_cache_seconds=3600)
    app = create_app(settings, start_worker=False)
    config = "/llm-ops/v1/integrations/mlflow/config"

    def background_checked(since: datetime) -> bool:
        [result] = app.state.platform.health.results("mlflow")
        return result.health.checked_at > since and result.health.detail != NOT_CHECKED

    with TestClient(app) as client:
        with app.state.platform.transaction() as session:
            _, key = create_api_key(session=session, name="t", role=Role.ADMIN)
        client.headers["Authorization"] = f"Bearer {key}"
        _tested(client)  # the first provider (no token) has started and been checked
        wait_for(lambda: background_checked(datetime.min.replace(tzinfo=UTC)))
        fake_mlflow.authorizations.clear()
        changed = datetime.now(UTC)
        set_token = client.put(config, json={"settings": {"token": "canary-5f1e"}})
        with_token = _tested(client)
        wait_for(lambda: background_checked(changed))
        sent_with_token = list(fake_mlflow.authorizations)
        environment_with_token = dict(os.environ)
        fake_mlflow.authorizations.clear()
        removed = client.put(config, json={"settings": {"token": None}})
        without_token = _tested(client)
        sent_without_token = list(fake_mlflow.authorizations)

    assert set_token.status_code == 200, set_token.text
    assert removed.status_code == 200, removed.text
    assert with_token["ok"] is True
    assert without_token["ok"] is True
    assert sent_with_token
    assert set(sent_with_token) == {"Bearer canary-5f1e"}
    assert sent_without_token
    assert set(sent_without_token) == {None}
    assert not [k for k, v in environment_with_token.items() if "canary-5f1e" in v]
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ


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

    def slow_start(self: module.MlflowTracker) -> Any:
        release.wait(30)  # as if `import mlflow` took this long
        return original(self)

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


# -- one tracker per plugin instance ---------------------------------------------------------


def test_the_metrics_collector_counts_through_the_tracking_provider(tmp_path: Path) -> None:
    settings, context = MlflowSettings(), _context(tmp_path)
    tracker = llmops_tracking(settings, context)

    collectors = llmops_metrics_collectors(
        settings, context, providers={Capability.TRACKING: (tracker,)}
    )

    [collector] = collectors
    assert isinstance(collector, MlflowRunsCollector)
    assert collector.tracker is tracker


def test_without_a_tracking_provider_the_plugin_contributes_no_collector(tmp_path: Path) -> None:
    assert llmops_metrics_collectors(MlflowSettings(), _context(tmp_path), providers={}) == []


def test_the_platform_builds_one_tracker_for_tracking_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[MlflowTracker] = []
    original = MlflowTracker.__init__

    def counting_init(self: MlflowTracker, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowTracker, "__init__", counting_init)
    before = _client_threads()
    platform = Platform(CoreSettings(data_dir=tmp_path / "data", plugins="mlflow"))
    # what start() does up to the health checks (their background round may reach MLflow)
    platform.migrate()
    with platform.sessions() as session:
        platform.runtime.sync(session)
    try:
        state = platform.runtime.state("mlflow")
        failure = state.failure
        trackers = list(state.providers.get(Capability.TRACKING, []))
        collectors = list(state.collectors)
        started_by_configuring = _client_threads() - before
    finally:
        platform.stop()

    assert failure is None, failure
    [tracker] = trackers
    [collector] = collectors
    assert isinstance(collector, MlflowRunsCollector)
    assert collector.tracker is tracker
    assert built == [tracker]
    assert started_by_configuring == set()  # nothing reached MLflow while configuring


# -- no contact until first use ----------------------------------------------------------------


def test_configuring_the_plugin_contacts_mlflow_only_on_first_use(
    fake_mlflow: FakeMlflow, tmp_path: Path
) -> None:
    settings, context = MlflowSettings(tracking_uri=fake_mlflow.url), _context(tmp_path)
    before = _client_threads()

    tracker = llmops_tracking(settings, context)
    llmops_metrics_collectors(settings, context, providers={Capability.TRACKING: (tracker,)})

    assert _client_threads() - before == set()
    assert fake_mlflow.requests == []
    wait_for(lambda: tracker.health().status is HealthStatus.OK, timeout=30, what="MLflow's client")
    assert fake_mlflow.requests[0] == "POST /api/2.0/mlflow/experiments/search"


# -- the platform's migrations lock ------------------------------------------------------------


class RecordingLock:
    """A lock that records who took it and whether the store existed on entry and exit."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._lock = threading.RLock()
        self.entries: list[tuple[str, bool]] = []
        self.exits: list[bool] = []

    def __enter__(self) -> RecordingLock:
        self._lock.acquire()
        self.entries.append((threading.current_thread().name, self.store.exists()))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.exits.append(self.store.exists())
        self._lock.release()


def test_the_local_store_is_created_under_the_platforms_migrations_lock(tmp_path: Path) -> None:
    store = tmp_path / "plugins" / "mlflow" / "mlflow.db"
    lock = RecordingLock(store)
    tracker = llmops_tracking(MlflowSettings(), _context(tmp_path, migrations_lock=lock))

    tracker.create_run(RunSpec(experiment="locked", run_name="r"))

    # taken by the client's start before MLflow created (and migrated) the store, and
    # released after: MLflow's Alembic never runs beside the core's
    assert lock.entries == [("mlflow-client", False)]
    assert lock.exits == [True]


def test_the_trackers_plugin_and_metrics_modules_import_only_the_plugin_api(
    tmp_path: Path,
) -> None:
    # the source roots of the llmops package: the plugin API's and the testing kit's, and
    # the server's (read from the tree: editable installs list no files)
    roots = [Path(p) for p in llmops.__path__]
    plugin_api = ModuleTree([r.parent for r in roots if not (r / "platform.py").is_file()])
    core = ModuleTree([r.parent for r in roots])
    mine = ("llmops_mlflow.tracker ", "llmops_mlflow.plugin ", "llmops_mlflow.metrics ")

    def server_imports(source: Path) -> list[str]:
        found = check_plugin(source, package="llmops_mlflow", plugin_api=plugin_api, core=core)
        return [str(v) for v in found if any(m in str(v) for m in mine)]

    # what the tracker did before: the check sees it
    earlier = tmp_path / "src" / "llmops_mlflow"
    earlier.mkdir(parents=True)
    (earlier / "__init__.py").write_text("")
    (earlier / "tracker.py").write_text("from llmops.db.migrate import MIGRATIONS_LOCK\n")

    assert len(server_imports(tmp_path / "src")) == 1
    assert server_imports(Path(__file__).parents[1] / "src") == []
