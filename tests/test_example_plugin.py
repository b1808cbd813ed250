"""The example plugin (tests/example_plugin): its tracker honours the TrackingProvider
Protocol, and the core discovers, loads and validates it through its entry point.

It must be installed in the environment (``uv pip install -e tests/example_plugin``; the
workspace's dev group does it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.capabilities.common import Capability, HealthStatus, Provider
from llmops.capabilities.tracking import (
    MetricPoint,
    RunQuery,
    RunSpec,
    RunStatus,
    TrackingProvider,
)
from llmops.errors import Conflict, InvalidRequest, NotFound
from llmops.plugins import PluginContext
from llmops.plugins.discovery import call_one, installed_plugins, load_plugins, make_plugin_manager
from llmops_example.plugin import ExampleSettings
from llmops_example.tracker import IDEMPOTENCY_TAG, JsonFileTracker


@pytest.fixture
def tracker(tmp_path: Path) -> JsonFileTracker:
    return JsonFileTracker(tmp_path / "runs")


def spec(**overrides: object) -> RunSpec:
    values: dict[str, object] = {"experiment": "exp", "run_name": "run"}
    values.update(overrides)
    return RunSpec.model_validate(values)


# -- the Protocol ------------------------------------------------------------------------


def test_json_file_tracker_is_a_tracking_backend_and_a_provider(
    tracker: JsonFileTracker,
) -> None:
    assert isinstance(tracker, TrackingProvider)
    assert isinstance(tracker, Provider)
    assert tracker.max_metrics_per_batch >= 1


def test_building_a_tracker_touches_no_files(tmp_path: Path) -> None:
    JsonFileTracker(tmp_path / "not-yet")
    assert not (tmp_path / "not-yet").exists()


# -- runs --------------------------------------------------------------------------------


def test_create_run_returns_a_running_run_with_its_params_and_tags(
    tracker: JsonFileTracker,
) -> None:
    run = tracker.create_run(spec(params={"lr": "0.1"}, tags={"team": "nlp"}))
    assert run.status is RunStatus.RUNNING
    assert run.start_time is not None
    assert run.end_time is None
    assert run.params == {"lr": "0.1"}
    assert run.tags == {"team": "nlp"}
    assert run.experiment_name == "exp"
    assert tracker.get_run(run.run_id) == run


def test_runs_of_one_experiment_share_its_id(tracker: JsonFileTracker) -> None:
    first = tracker.create_run(spec())
    second = tracker.create_run(spec())
    other = tracker.create_run(spec(experiment="other"))
    assert first.run_id != second.run_id
    assert first.experiment_id == second.experiment_id != other.experiment_id


def test_create_run_with_a_known_idempotency_key_returns_the_first_run(
    tracker: JsonFileTracker,
) -> None:
    first = tracker.create_run(spec(idempotency_key="job-1"))
    again = tracker.create_run(spec(idempotency_key="job-1", run_name="retry"))
    other = tracker.create_run(spec(idempotency_key="job-2"))
    assert again == first
    assert other.run_id != first.run_id
    assert first.tags[IDEMPOTENCY_TAG] == "job-1"
    assert len(tracker.search_runs(RunQuery()).runs) == 2


def test_idempotency_survives_a_new_tracker_on_the_same_folder(tmp_path: Path) -> None:
    first = JsonFileTracker(tmp_path).create_run(spec(idempotency_key="k"))
    again = JsonFileTracker(tmp_path).create_run(spec(idempotency_key="k"))
    assert again.run_id == first.run_id


@pytest.mark.parametrize("run_id", ["0" * 32, "nope", "../../etc"])
def test_get_run_of_an_unknown_id_raises_not_found(tracker: JsonFileTracker, run_id: str) -> None:
    with pytest.raises(NotFound):
        tracker.get_run(run_id)


def test_end_run_records_the_status_and_the_end_time(tracker: JsonFileTracker) -> None:
    run = tracker.create_run(spec())
    ended = tracker.end_run(run.run_id, RunStatus.FAILED)
    assert ended.status is RunStatus.FAILED
    assert ended.end_time is not None
    assert tracker.get_run(run.run_id) == ended


def test_log_params_adds_params_and_accepts_the_same_value_again(
    tracker: JsonFileTracker,
) -> None:
    run = tracker.create_run(spec(params={"lr": "0.1"}))
    tracker.log_params(run.run_id, {"lr": "0.1", "epochs": "3"})
    assert tracker.get_run(run.run_id).params == {"lr": "0.1", "epochs": "3"}


def test_log_params_refuses_to_change_a_logged_value(tracker: JsonFileTracker) -> None:
    run = tracker.create_run(spec(params={"lr": "0.1"}))
    with pytest.raises(Conflict, match="lr"):
        tracker.log_params(run.run_id, {"lr": "0.2"})
    assert tracker.get_run(run.run_id).params == {"lr": "0.1"}


# -- metrics -----------------------------------------------------------------------------


def test_metric_history_keeps_every_point_in_step_order(tracker: JsonFileTracker) -> None:
    run = tracker.create_run(spec())
    tracker.log_metrics(
        run.run_id,
        [MetricPoint(key="loss", value=0.5, step=2), MetricPoint(key="acc", value=0.7, step=1)],
    )
    tracker.log_metrics(run.run_id, [MetricPoint(key="loss", value=0.9, step=1)])
    history = tracker.metric_history(run.run_id, "loss")
    assert [(p.step, p.value) for p in history] == [(1, 0.9), (2, 0.5)]
    assert tracker.metric_history(run.run_id, "missing") == []


def test_latest_metrics_hold_the_value_of_the_highest_step(tracker: JsonFileTracker) -> None:
    run = tracker.create_run(spec())
    tracker.log_metrics(run.run_id, [MetricPoint(key="loss", value=0.5, step=2)])
    tracker.log_metrics(run.run_id, [MetricPoint(key="loss", value=0.9, step=1)])
    assert tracker.get_run(run.run_id).latest_metrics == {"loss": 0.5}


def test_log_metrics_refuses_a_batch_larger_than_advertised(tracker: JsonFileTracker) -> None:
    run = tracker.create_run(spec())
    points = [MetricPoint(key="m", value=1.0, step=i) for i in range(1001)]
    with pytest.raises(InvalidRequest):
        tracker.log_metrics(run.run_id, points)


def test_log_metrics_to_an_unknown_run_raises_not_found(tracker: JsonFileTracker) -> None:
    with pytest.raises(NotFound):
        tracker.log_metrics("f" * 32, [MetricPoint(key="m", value=1.0)])


# -- artifacts ---------------------------------------------------------------------------


def test_log_artifact_copies_the_file_into_the_runs_folder(
    tracker: JsonFileTracker, tmp_path: Path
) -> None:
    run = tracker.create_run(spec())
    source = tmp_path / "model.bin"
    source.write_bytes(b"12345")
    info = tracker.log_artifact(run.run_id, source, "weights")
    source.unlink()  # a copy, not a reference
    assert info.path == "weights/model.bin"
    assert info.size_bytes == 5
    assert not info.is_dir
    assert run.artifact_uri is not None
    assert Path(run.artifact_uri.removeprefix("file://"), "weights", "model.bin").read_bytes() == (
        b"12345"
    )


def test_list_artifacts_lists_one_folder_level(tracker: JsonFileTracker, tmp_path: Path) -> None:
    run = tracker.create_run(spec())
    folder = tmp_path / "eval"
    (folder / "plots").mkdir(parents=True)
    (folder / "scores.json").write_text("{}")
    (folder / "plots" / "roc.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("hi")
    assert tracker.log_artifact(run.run_id, folder).is_dir
    tracker.log_artifact(run.run_id, tmp_path / "notes.txt")

    top = tracker.list_artifacts(run.run_id)
    assert [(a.path, a.is_dir) for a in top] == [("eval", True), ("notes.txt", False)]
    inner = tracker.list_artifacts(run.run_id, "eval")
    assert [(a.path, a.is_dir, a.size_bytes) for a in inner] == [
        ("eval/plots", True, None),
        ("eval/scores.json", False, 2),
    ]
    assert tracker.list_artifacts(run.run_id, "missing") == []


@pytest.mark.parametrize("artifact_path", ["../..", "/etc"])
def test_artifact_paths_outside_the_run_are_refused(
    tracker: JsonFileTracker, tmp_path: Path, artifact_path: str
) -> None:
    run = tracker.create_run(spec())
    source = tmp_path / "f.txt"
    source.write_text("x")
    with pytest.raises(InvalidRequest):
        tracker.log_artifact(run.run_id, source, artifact_path)
    with pytest.raises(InvalidRequest):
        tracker.list_artifacts(run.run_id, artifact_path)


def test_logging_a_missing_file_is_refused(tracker: JsonFileTracker, tmp_path: Path) -> None:
    run = tracker.create_run(spec())
    with pytest.raises(InvalidRequest):
        tracker.log_artifact(run.run_id, tmp_path / "absent")


# -- search ------------------------------------------------------------------------------


def test_search_runs_filters_on_params_and_tags(tracker: JsonFileTracker) -> None:
    small = tracker.create_run(spec(params={"size": "s"}, tags={"team": "nlp"}))
    large = tracker.create_run(spec(params={"size": "l"}, tags={"team": "nlp"}))
    tracker.create_run(spec(params={"size": "l"}, tags={"team": "cv"}))

    def ids(filter_: str) -> set[str]:
        return {r.run_id for r in tracker.search_runs(RunQuery(filter=filter_)).runs}

    assert ids("size = 's'") == {small.run_id}
    assert ids("params.size = 'l' AND tags.team = \"nlp\"") == {large.run_id}
    assert ids("tags.size = 'l'") == set()
    assert len(ids("")) == 3


def test_search_runs_keeps_to_the_named_experiments(tracker: JsonFileTracker) -> None:
    wanted = tracker.create_run(spec(experiment="a"))
    tracker.create_run(spec(experiment="b"))
    page = tracker.search_runs(RunQuery(experiments=["a", "unknown"]))
    assert [r.run_id for r in page.runs] == [wanted.run_id]


def test_search_runs_pages_through_every_run_once(tracker: JsonFileTracker) -> None:
    created = {tracker.create_run(spec()).run_id for _ in range(5)}
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = tracker.search_runs(RunQuery(page_size=2, page_token=token))
        seen += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(created)


def test_search_runs_shows_the_newest_run_first(tracker: JsonFileTracker) -> None:
    first = tracker.create_run(spec())
    second = tracker.create_run(spec())
    assert [r.run_id for r in tracker.search_runs(RunQuery()).runs] == [
        second.run_id,
        first.run_id,
    ]


def test_search_runs_orders_by_a_metric_with_runs_lacking_it_last(
    tracker: JsonFileTracker,
) -> None:
    low, high, none = (tracker.create_run(spec()) for _ in range(3))
    tracker.log_metrics(low.run_id, [MetricPoint(key="acc", value=0.1)])
    tracker.log_metrics(high.run_id, [MetricPoint(key="acc", value=0.9)])
    page = tracker.search_runs(RunQuery(order_by=["metrics.acc DESC"]))
    assert [r.run_id for r in page.runs] == [high.run_id, low.run_id, none.run_id]
    page = tracker.search_runs(RunQuery(order_by=["metrics.acc"]))
    assert [r.run_id for r in page.runs] == [low.run_id, high.run_id, none.run_id]


@pytest.mark.parametrize(
    "query",
    [
        RunQuery(filter="size > 3"),
        RunQuery(filter="size = 's' OR size = 'l'"),
        RunQuery(order_by=["params.size"]),
        RunQuery(page_token="not-a-token"),
    ],
)
def test_search_runs_refuses_what_it_does_not_understand(
    tracker: JsonFileTracker, query: RunQuery
) -> None:
    with pytest.raises(InvalidRequest):
        tracker.search_runs(query)


def test_json_files_have_no_run_url(tracker: JsonFileTracker) -> None:
    assert tracker.run_url(tracker.create_run(spec()).run_id) is None


# -- health ------------------------------------------------------------------------------


def test_health_is_ok_and_creates_a_writable_folder(tmp_path: Path) -> None:
    health = JsonFileTracker(tmp_path / "new").health()
    assert health.status is HealthStatus.OK
    assert health.latency_ms is not None
    assert (tmp_path / "new").is_dir()
    assert list((tmp_path / "new").iterdir()) == []  # the probe is cleaned up


def test_health_is_down_with_the_reason_when_the_folder_cannot_be_written(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    health = JsonFileTracker(blocker / "runs").health()
    assert health.status is HealthStatus.DOWN
    assert str(blocker) in health.detail


# -- the plugin, through the core --------------------------------------------------------


def test_the_example_plugin_is_installed_under_its_entry_point() -> None:
    found = {p.name: p for p in installed_plugins()}
    assert found["example"].target == "llmops_example.plugin"
    assert found["example"].distribution == "llmops-example"


def test_load_plugins_loads_the_example_and_validates_its_info() -> None:
    pm = make_plugin_manager()
    loaded, failures = load_plugins(["example"], pm)
    assert failures == []
    [plugin] = loaded
    assert plugin.name == plugin.info.name == "example"
    assert plugin.info.capabilities == {Capability.TRACKING}
    assert plugin.info.settings_model is ExampleSettings
    assert pm.get_plugin("example") is plugin.module


def test_the_tracking_hook_builds_a_tracker_in_the_plugins_data_dir(tmp_path: Path) -> None:
    pm = make_plugin_manager()
    [plugin], _ = load_plugins(["example"], pm)
    context = PluginContext("example", tmp_path / "data", "http://127.0.0.1:8000", "0.1.0")
    tracker = call_one(
        pm, plugin.module, "llmops_tracking", settings=ExampleSettings(), context=context
    )
    assert isinstance(tracker, TrackingProvider)
    assert isinstance(tracker, JsonFileTracker)
    assert tracker.root == tmp_path / "data"

    chosen = ExampleSettings(root=tmp_path / "elsewhere")
    tracker = call_one(pm, plugin.module, "llmops_tracking", settings=chosen, context=context)
    assert tracker.root == tmp_path / "elsewhere"


def test_settings_come_from_the_environment_with_the_token_kept_secret(tmp_path: Path) -> None:
    from llmops.integrations import env_settings, public_settings

    environ = {"LLMOPS_EXAMPLE__ROOT": str(tmp_path), "LLMOPS_EXAMPLE__API_TOKEN": "s3cret"}
    settings = ExampleSettings.model_validate(env_settings("example", environ))
    assert settings.root == tmp_path
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert public_settings(settings) == {"root": str(tmp_path)}


def test_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="rooot"):
        ExampleSettings.model_validate({"rooot": "/tmp"})


def test_importing_the_plugin_module_leaves_the_tracker_unimported() -> None:
    code = "import sys, llmops_example.plugin\nprint('llmops_example.tracker' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.stdout.strip() == "False"


# -- the walkthrough quotes the docs' example plugin (docs/plugins/example) ---------------

REPO = Path(__file__).resolve().parents[1]
WALKTHROUGH = REPO / "docs" / "plugins" / "writing-a-plugin.md"


def quoted_blocks(markdown: str) -> list[tuple[str, str]]:
    """(path, code) for every fenced block whose first line is ``# <path in the repo>``."""
    blocks = re.findall(r"^```\w*\n# (\S+)\n(.*?)^```$", markdown, flags=re.M | re.S)
    return [(path, code) for path, code in blocks if (REPO / path).is_file()]


def test_the_walkthrough_quotes_the_example_plugin_verbatim() -> None:
    blocks = quoted_blocks(WALKTHROUGH.read_text(encoding="utf-8"))
    assert {path for path, _ in blocks} >= {
        "docs/plugins/example/pyproject.toml",
        "docs/plugins/example/src/llmops_folder_registry/plugin.py",
        "docs/plugins/example/src/llmops_folder_registry/registry.py",
        "docs/plugins/example/tests/test_contract.py",
    }
    stale = [path for path, code in blocks if code not in (REPO / path).read_text(encoding="utf-8")]
    assert not stale, f"{WALKTHROUGH.name} quotes code that is no longer in {stale}"
