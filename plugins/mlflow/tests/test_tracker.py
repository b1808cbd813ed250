"""MlflowTracker's rules beyond the contract suite: building one contacts nothing, its
client starts on first use (and again after a start that failed), a new experiment is
created once however many calls race for it, "every experiment" means every page of them,
and credentials MLflow refuses are a rejection, not an outage."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.tracking import RunInfo, RunQuery, RunSpec
from llmops.errors import IntegrationRejected, IntegrationUnavailable
from llmops.resilience.errors import retryable
from llmops.testing.waiting import wait_for
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker

if TYPE_CHECKING:  # the fixture's type (conftest.py is not importable under importlib)
    from conftest import FakeMlflow


def _client_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "mlflow-client"}


# -- no contact at construction ----------------------------------------------------------


def test_building_a_tracker_makes_no_request_and_starts_no_thread(
    fake_mlflow: FakeMlflow,
) -> None:
    before = _client_threads()

    tracker = MlflowTracker(fake_mlflow.url, request_timeout=2)

    assert _client_threads() - before == set()  # nothing left that could call later
    assert fake_mlflow.requests == []
    # the first use is what reaches MLflow: health's own request comes first
    wait_for(lambda: tracker.health().status is HealthStatus.OK, timeout=30, what="MLflow's client")
    assert fake_mlflow.requests[0] == "POST /api/2.0/mlflow/experiments/search"


def test_a_local_store_is_not_opened_until_the_first_call(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    before = _client_threads()
    tracker = MlflowTracker(f"sqlite:///{store}")

    started_at_build = _client_threads() - before
    opened_before_use = store.exists()
    tracker.create_run(RunSpec(experiment="lazy", run_name="r"))

    assert started_at_build == set()
    assert opened_before_use is False
    assert store.is_file()


# -- a failed start is not cached ----------------------------------------------------------


def _failing_first_start(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the first start of MLflow's client fail; the list counts the starts."""
    starts: list[str] = []
    original = MlflowTracker._start_client

    def flaky(self: MlflowTracker) -> Any:
        starts.append(threading.current_thread().name)
        if len(starts) == 1:
            raise RuntimeError("the store is not mounted yet")
        return original(self)

    monkeypatch.setattr(MlflowTracker, "_start_client", flaky)
    return starts


def test_a_failed_client_start_is_tried_again_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _failing_first_start(monkeypatch)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")

    with pytest.raises(IntegrationUnavailable, match="could not start: the store is not mounted"):
        tracker.create_run(RunSpec(experiment="e", run_name="first"))
    run = tracker.create_run(RunSpec(experiment="e", run_name="second"))
    tracker.get_run(run.run_id)

    assert run.name == "second"
    assert starts == ["mlflow-client", "mlflow-client"]  # in the background; kept once up


def test_health_after_a_failed_client_start_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _failing_first_start(monkeypatch)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")

    down = tracker.health()
    answers: list[Health] = []

    def loaded() -> Health | None:
        # the second start loads MLflow's client in the background: until it has,
        # health says "starting" (each call waits HEALTH_STARTUP_WAIT for it)
        answers.append(tracker.health())
        return None if answers[-1].status is HealthStatus.DEGRADED else answers[-1]

    up = wait_for(loaded, timeout=60, interval=0, what="MLflow's client to start again")

    assert down.status is HealthStatus.DOWN
    assert "the store is not mounted yet" in down.detail
    assert all("starting" in a.detail for a in answers[:-1])
    assert up.status is HealthStatus.OK
    assert len(starts) == 2


# -- one experiment however many calls race for it ----------------------------------------


def test_concurrent_first_runs_in_a_new_experiment_create_it_once(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    callers = 8
    created: list[str] = []
    original_create = MlflowClient.create_experiment
    original_lookup = MlflowClient.get_experiment_by_name
    looked_up: list[str] = []
    all_looked_up = threading.Event()

    def slow_lookup(self: MlflowClient, name: str) -> Any:
        found = original_lookup(self, name)
        if found is None:
            # widen the race window: a lookup that found nothing waits (up to 1 s) for the
            # other callers' lookups, as if MLflow answered them all at the same moment
            looked_up.append(name)
            if len(looked_up) == callers:
                all_looked_up.set()
            all_looked_up.wait(1.0)
        return found

    def counting_create(self: MlflowClient, name: str, *args: Any, **kwargs: Any) -> str:
        created.append(name)
        return original_create(self, name, *args, **kwargs)

    starts: list[str] = []
    original_start = MlflowTracker._start_client

    def counting_start(self: MlflowTracker) -> Any:
        starts.append(self.tracking_uri)
        return original_start(self)

    monkeypatch.setattr(MlflowClient, "create_experiment", counting_create)
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", slow_lookup)
    monkeypatch.setattr(MlflowTracker, "_start_client", counting_start)
    tracker = MlflowTracker(mlflow_server.url, request_timeout=10)
    experiment = f"race-{uuid.uuid4().hex[:8]}"
    together = threading.Barrier(callers)
    runs: list[RunInfo] = []
    failures: list[BaseException] = []

    def create(i: int) -> None:
        together.wait(30)
        try:
            runs.append(tracker.create_run(RunSpec(experiment=experiment, run_name=f"r{i}")))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert failures == []
    assert len(runs) == callers
    assert created.count(experiment) == 1
    assert looked_up == [experiment]  # the others waited for the first, then knew the id
    assert len({run.experiment_id for run in runs}) == 1
    assert {run.experiment_name for run in runs} == {experiment}
    assert len(starts) == 1  # the first calls shared one start of the client
    found = MlflowClient(mlflow_server.url).search_experiments(
        filter_string=f"name = '{experiment}'"
    )
    assert [e.name for e in found] == [experiment]


# -- every experiment is every page of them -----------------------------------------------


def pages_of_two(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Make MLflow answer experiment searches in pages of at most 2 (as if there were
    thousands of experiments); the list records the page tokens asked for."""
    from mlflow.tracking import MlflowClient

    tokens: list[str | None] = []
    original = MlflowClient.search_experiments

    def paging(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        tokens.append(kwargs.get("page_token"))
        kwargs["max_results"] = min(2, kwargs.get("max_results") or 2)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_experiments", paging)
    return tokens


def test_a_search_over_every_experiment_follows_mlflows_page_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    names = {f"paged-{i}" for i in range(5)}
    for name in sorted(names):
        tracker.create_run(RunSpec(experiment=name, run_name="r", tags={"batch": "paged"}))
    fresh = MlflowTracker(tracker.tracking_uri)  # knows no experiment yet
    fresh.get_run(tracker.search_runs(RunQuery()).runs[0].run_id)  # its client is up
    tokens = pages_of_two(monkeypatch)

    page = fresh.search_runs(RunQuery(filter="tags.batch = 'paged'", page_size=100))

    assert {run.experiment_name for run in page.runs} == names
    assert len(tokens) == 3  # 6 experiments with Default: 3 pages, tokens followed
    assert tokens[0] is None
    assert all(tokens[1:])
    assert set(fresh.experiments().values()) == names | {"Default"}


# -- refused credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (403, {"error_code": "PERMISSION_DENIED", "message": "no"}, "application/json"),
        (401, {"error_code": "UNAUTHENTICATED", "message": "who?"}, "application/json"),
        (403, "Permission denied", "text/plain"),  # MLflow's auth app, or a proxy
        (401, "You are not authenticated", "text/plain"),
    ],
    ids=["permission-denied", "unauthenticated", "bare-403", "bare-401"],
)
def test_refused_credentials_are_a_rejection_that_is_not_retried(
    fake_mlflow: FakeMlflow, status: int, body: object, content_type: str
) -> None:
    fake_mlflow.status = status
    fake_mlflow.body = (json.dumps(body) if isinstance(body, dict) else str(body)).encode()
    fake_mlflow.content_type = content_type
    tracker = MlflowTracker(fake_mlflow.url, request_timeout=5)

    with pytest.raises(IntegrationRejected, match="refused the credentials") as refused:
        tracker.create_run(RunSpec(experiment="e", run_name="r"))

    assert refused.value.status == 502
    assert refused.value.extensions["upstream_status"] == status
    assert not isinstance(refused.value, IntegrationUnavailable)
    assert retryable(refused.value) is False


def test_a_server_error_from_mlflow_is_still_a_retryable_outage(fake_mlflow: FakeMlflow) -> None:
    fake_mlflow.status = 500
    fake_mlflow.body = b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'
    tracker = MlflowTracker(fake_mlflow.url, request_timeout=5)

    with pytest.raises(IntegrationUnavailable) as outage:
        tracker.create_run(RunSpec(experiment="e", run_name="r"))

    assert retryable(outage.value) is True
