"""Poison writes cannot open a circuit breaker (security hardening, item 3).

A write that its tool will refuse on every delivery must not stay queued, must not count
against the tool's circuit breaker, and must not take good writes queued beside it down
with it. What the API can know to be bad (the tool's own rules, declared by its provider
as ``ValidatesRunWrites``) is refused at once with 422 and never queued; what only the
tool can refuse dies on its first delivery and is listed in the dead letters.

The MLflow tests run the MLflow plugin on its local store; ``poisontrack`` is an
in-memory tracker that declares no rules, so the API cannot know what it refuses.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from llmops.capabilities.common import Capability
from llmops.errors import IntegrationRejected, IntegrationUnavailable, NotFound
from llmops.resilience.breaker import CircuitBreaker, CircuitState
from llmops.resilience.errors import retryable, translate
from llmops.resilience.guard import Guard, GuardMetrics
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for

PROBLEM = "application/problem+json"
POISON_KEY = "loss\u2028x"  # U+2028 LINE SEPARATOR: not a name MLflow accepts

_POISON_TRACKER = textwrap.dedent(
    """
    import threading

    import llmops
    from llmops.capabilities.common import Capability, Health, HealthStatus
    from llmops.capabilities.tracking import RunInfo, RunPage, RunStatus
    from llmops.errors import InvalidRequest, NotFound
    from llmops.plugins.info import PluginInfo, PluginSettings

    #: the "tool": runs by id, and every point it stored
    RUNS = {}
    POINTS = []
    #: down: every call fails as an outage does (connection refused)
    STATE = {"down": False}
    _LOCK = threading.Lock()


    def _reachable():
        if STATE["down"]:
            raise ConnectionRefusedError("poisontrack is down")


    class PoisonTracker:
        \"\"\"Refuses metric keys starting with "refused" (a refusal it explains) and fails
        on keys starting with "unclassified" with an error nobody can classify (its
        client's own ValueError); declares none of these rules to the core.\"\"\"

        max_metrics_per_batch = 1000
        honours_deadline = True

        def create_run(self, spec):
            _reachable()
            with _LOCK:
                run_id = f"run-{len(RUNS) + 1}"
                RUNS[run_id] = RunInfo(
                    run_id=run_id, experiment_id="1", experiment_name=spec.experiment,
                    name=spec.run_name, status=RunStatus.RUNNING, params=dict(spec.params),
                    tags=dict(spec.tags),
                )
                return RUNS[run_id]

        def get_run(self, run_id):
            _reachable()
            try:
                return RUNS[run_id]
            except KeyError:
                raise NotFound(f"no run {run_id!r}") from None

        def end_run(self, run_id, status):
            return self.get_run(run_id)

        def log_params(self, run_id, params):
            self.get_run(run_id)

        def log_metrics(self, run_id, metrics):
            self.get_run(run_id)
            for point in metrics:
                if point.key.startswith("refused"):
                    raise InvalidRequest(f"poisontrack refuses the key {point.key!r}")
                if point.key.startswith("unclassified"):
                    raise ValueError(f"Value out of range: {point.key}")
            with _LOCK:
                POINTS.extend((p.key, p.step) for p in metrics)

        def log_artifact(self, run_id, local_path, artifact_path=None):
            raise NotImplementedError

        def list_artifacts(self, run_id, path=None):
            return []

        def metric_history(self, run_id, key):
            return []

        def search_runs(self, query):
            _reachable()
            return RunPage(runs=list(RUNS.values()))

        def run_url(self, run_id):
            return None

        def health(self):
            return Health(status=HealthStatus.OK, detail="memory")


    @llmops.hookimpl
    def llmops_plugin_info():
        return PluginInfo(
            name="poisontrack", version="1.0.0", display_name="Poison tracker",
            capabilities=frozenset({Capability.TRACKING}), settings_model=PluginSettings,
        )


    @llmops.hookimpl
    def llmops_tracking(settings, context):
        return PoisonTracker()
    """
)

#: the suite's ``start`` fixture (conftest.py)
StartApp = Callable[..., TestClient]


@pytest.fixture
def poisontrack(install: PluginInstaller) -> Iterator[Any]:
    """The installed ``poisontrack`` plugin's module (imported once the app loads it)."""
    import importlib

    name = install("poisontrack", _POISON_TRACKER)
    module = importlib.import_module(name)
    yield module
    module.RUNS.clear()
    module.POINTS.clear()
    module.STATE["down"] = False


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def job_with_run(client: TestClient, api: str) -> str:
    """A training job (its process ends at once) with an experiment run."""
    job = client.post(
        f"{api}/training/jobs", json={"name": "j", "command": ["true"], "track": False}
    )
    assert job.status_code == 201, job.text
    job_id: str = job.json()["id"]
    run = client.post(f"{api}/training/jobs/{job_id}/experiment-run", json={})
    assert run.status_code in {201, 202}, run.text
    return job_id


def post_metrics(
    client: TestClient, api: str, job_id: str, *points: dict[str, Any], **kwargs: Any
) -> Any:
    return client.post(
        f"{api}/training/jobs/{job_id}/experiment-run/metrics",
        json={"metrics": list(points)},
        **kwargs,
    )


def operations(client: TestClient, api: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"{api}/operations", params={"limit": "200", **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def breaker_state(client: TestClient, provider: str) -> CircuitState:
    runtime = client.app.state.platform.runtime  # type: ignore[attr-defined]
    state: CircuitState = runtime.breaker(Capability.TRACKING, provider).state
    return state


# -- what the API can know: the tool's own rules, 422 at once, nothing queued ---------


@pytest.mark.parametrize("caller", ["admin", "job"])
def test_six_poison_metric_writes_are_refused_422_at_once_and_search_still_answers_200(
    start: StartApp, api: str, caller: str
) -> None:
    client = start(plugins="mlflow")
    job_id = job_with_run(client, api)
    wait_for(
        lambda: client.get(f"{api}/training/jobs/{job_id}/experiment-run").json()["externalId"],
        timeout=60,
        what="MLflow's client to start and the run to exist",
    )
    headers = {}
    if caller == "job":
        with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
            _, token = create_api_key(
                session=session, name=f"job {job_id}", role=Role.JOB, training_job_id=job_id
            )
        headers = {"Authorization": f"Bearer {token}"}

    answers = [
        post_metrics(
            client, api, job_id, {"key": POISON_KEY, "value": 1.0, "step": step}, headers=headers
        )
        for step in range(6)
    ]

    for answer in answers:
        body = problem(answer, 422)
        assert body["type"].endswith("/invalid-request")
        assert body["parameter"] == "metrics[0].key"
        assert "\\u2028" in body["detail"]  # the refused name, escaped
    assert operations(client, api, kind="run.metrics") == [], "nothing may be queued"
    search = client.post(f"{api}/experiments/search", json={})
    assert search.status_code == 200, search.text
    assert breaker_state(client, "mlflow") is CircuitState.CLOSED


def test_over_long_param_and_tag_values_and_bad_names_are_refused_and_nothing_is_made(
    start: StartApp, api: str
) -> None:
    client = start(plugins="mlflow")
    job = client.post(
        f"{api}/training/jobs", json={"name": "j", "command": ["true"], "track": False}
    )
    run_url = f"{api}/training/jobs/{job.json()['id']}/experiment-run"

    # MLflow's own rules, beyond the API's generic bounds (8000 characters a value)
    refused = {
        "params": client.post(run_url, json={"params": {"prompt": "x" * 6001}}),
        "tags": client.post(run_url, json={"tags": {"team\u2028": "nlp"}}),
        "param name": client.post(run_url, json={"params": {"../lr": "0.1"}}),
    }
    hyperparameters = client.post(
        f"{api}/training/jobs",
        json={"name": "k", "command": ["true"], "hyperparameters": {"prompt": "x" * 6001}},
    )
    # the generic bounds, which MLflow's limits also set
    too_long = {
        "tags": client.post(run_url, json={"tags": {"note": "x" * 8001}}),
        "experiment": client.post(run_url, json={"experiment": "e" * 501}),
    }

    for what, answer in refused.items():
        body = problem(answer, 422)
        assert body["type"].endswith("/invalid-request"), what
        assert body["parameter"] == {"param name": "params"}.get(what, what), what
    assert "6000" in refused["params"].json()["detail"]
    assert "'prompt'" in problem(hyperparameters, 422)["detail"]
    for what, answer in too_long.items():
        assert problem(answer, 422)["type"].endswith("/validation-error"), what
    assert client.get(run_url).status_code == 404, "no run was made"
    names = [j["name"] for j in client.get(f"{api}/training/jobs").json()["items"]]
    assert names == ["j"], "the job with the over-long hyperparameter was not made"
    assert operations(client, api, kind="run.create") == []
    assert client.post(run_url, json={"params": {"lr": "0.1"}}).status_code in {201, 202}


def test_a_step_beyond_64_bits_is_refused_422_at_once_whatever_the_tracker(
    start: StartApp, api: str, poisontrack: Any
) -> None:
    """MLflow's client fails on such a step with an error nobody can classify: the cause
    of the reported outage. Steps are 64-bit in every tracker the platform knows."""
    client = start(plugins="poisontrack")
    job_id = job_with_run(client, api)

    for step in (2**63, -(2**63) - 1):
        answer = post_metrics(client, api, job_id, {"key": "loss", "value": 1.0, "step": step})
        problem(answer, 422)
    assert operations(client, api, kind="run.metrics") == []


# -- what only the tool knows: dead at once, never counted by the breaker -------------


@pytest.mark.parametrize(
    ("key", "status"),
    [("refused.loss", 422), ("unclassified.loss", 502)],
    ids=["the-tool-refuses-it", "its-client-fails-unclassifiably"],
)
def test_a_write_only_the_tool_refuses_dies_at_once_and_never_opens_the_breaker(
    start: StartApp, api: str, poisontrack: Any, key: str, status: int
) -> None:
    client = start(plugins="poisontrack")
    job_id = job_with_run(client, api)

    answers = [
        post_metrics(client, api, job_id, {"key": key, "value": 1.0, "step": step})
        for step in range(12)  # more than the breaker's threshold of 5
    ]

    for answer in answers:
        problem(answer, status)
    dead = operations(client, api, kind="run.metrics", status="dead")
    assert len(dead) == 12
    assert all(op["attempts"] == 1 for op in dead), "dead on the first delivery"
    assert all(key in (op["lastError"] or "") for op in dead), "the reason is kept"
    assert operations(client, api, kind="run.metrics", status="pending") == []
    assert breaker_state(client, "poisontrack") is CircuitState.CLOSED
    assert client.post(f"{api}/experiments/search", json={}).status_code == 200
    good = post_metrics(client, api, job_id, {"key": "loss", "value": 1.0})
    assert good.status_code == 200, good.text


def test_transient_failures_still_open_the_breaker(
    start: StartApp, api: str, poisontrack: Any
) -> None:
    client = start(plugins="poisontrack")
    job_id = job_with_run(client, api)
    poisontrack.STATE["down"] = True

    answers = [
        post_metrics(client, api, job_id, {"key": "loss", "value": 1.0, "step": step})
        for step in range(6)
    ]

    assert [a.status_code for a in answers] == [202] * 6, "queued, not lost"
    assert breaker_state(client, "poisontrack") is CircuitState.OPEN
    problem(client.post(f"{api}/experiments/search", json={}), 503)
    assert operations(client, api, kind="run.metrics", status="dead") == []


def test_good_points_queued_with_a_poison_one_are_still_delivered(
    start: StartApp, api: str, poisontrack: Any
) -> None:
    # no background worker: the deliveries below are the requests' own, so the queued
    # points are certainly taken along by them
    client = start(plugins="poisontrack", sync_interval_seconds=3600, circuit_failure_threshold=100)
    job_id = job_with_run(client, api)
    poisontrack.STATE["down"] = True
    queued = [
        post_metrics(client, api, job_id, {"key": k, "value": 1.0, "step": s})
        for k, s in (("loss", 1), ("refused.a", 2), ("loss", 3))
    ]
    assert [q.status_code for q in queued] == [202, 202, 202]
    poisontrack.STATE["down"] = False

    last = post_metrics(client, api, job_id, {"key": "loss", "value": 1.0, "step": 4})

    assert last.status_code == 200, last.text
    assert sorted(poisontrack.POINTS) == [("loss", 1), ("loss", 3), ("loss", 4)]
    by_id = {op["id"]: op for op in operations(client, api, kind="run.metrics")}
    first, poison, third = (by_id[q.json()["operationId"]] for q in queued)
    assert first["status"] == third["status"] == "succeeded"
    assert poison["status"] == "dead"
    assert "refused.a" in poison["lastError"]

    # the poison write is the request's own: the points queued before it still leave
    poisontrack.STATE["down"] = True
    waiting = post_metrics(client, api, job_id, {"key": "loss", "value": 1.0, "step": 5})
    assert waiting.status_code == 202
    poisontrack.STATE["down"] = False

    refused = post_metrics(client, api, job_id, {"key": "refused.b", "value": 1.0, "step": 6})

    assert problem(refused, 422)["detail"].count("refused.b") >= 1
    assert ("loss", 5) in poisontrack.POINTS
    assert not [p for p in poisontrack.POINTS if p[0].startswith("refused")]
    carried = client.get(f"{api}/operations/{waiting.json()['operationId']}").json()
    assert carried["status"] == "succeeded"
    assert dead_reasons(client, api) == {"refused.a", "refused.b"}


def dead_reasons(client: TestClient, api: str) -> set[str]:
    found: set[str] = set()
    for op in operations(client, api, kind="run.metrics", status="dead"):
        found |= {k for k in ("refused.a", "refused.b") if k in (op["lastError"] or "")}
    return found


# -- the guard: what counts against a breaker -----------------------------------------


def _guard(threshold: int = 2) -> Guard:
    return Guard(
        "tool",
        "tracking",
        timeout=1.0,
        breaker=CircuitBreaker(failure_threshold=threshold, reset_timeout=60),
        metrics=GuardMetrics(CollectorRegistry()),
    )


def test_an_error_nobody_can_classify_is_not_retried_and_not_counted() -> None:
    guard = _guard()

    def fails() -> None:
        raise ValueError("Value out of range: 9223372036854775808")

    for _ in range(10):
        with pytest.raises(IntegrationRejected) as failed:
            guard.call("log_metrics", fails)
    assert guard.breaker.state is CircuitState.CLOSED
    assert retryable(failed.value) is False
    assert "ValueError" in failed.value.detail
    assert isinstance(translate(ConnectionResetError(), where="x"), IntegrationUnavailable)


def test_an_unclassified_error_in_a_half_open_trial_neither_closes_nor_wedges_it() -> None:
    now = [0.0]
    guard = Guard(
        "tool",
        "tracking",
        timeout=1.0,
        breaker=CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=lambda: now[0]),
        metrics=GuardMetrics(CollectorRegistry()),
    )
    with pytest.raises(IntegrationUnavailable):
        guard.call("get_run", lambda: (_ for _ in ()).throw(ConnectionRefusedError()))
    now[0] = 11.0
    assert guard.breaker.state is CircuitState.HALF_OPEN

    with pytest.raises(IntegrationRejected):
        guard.call("get_run", lambda: (_ for _ in ()).throw(KeyError("bug")))

    assert guard.breaker.state is CircuitState.HALF_OPEN, "no verdict on the tool"
    assert guard.call("get_run", lambda: "ok") == "ok", "the next call is the trial"
    assert breaker_closed(guard.breaker)


def breaker_closed(breaker: CircuitBreaker) -> bool:
    return breaker.state is CircuitState.CLOSED


def test_a_refusal_from_the_tool_is_no_outage() -> None:
    guard = _guard()

    for _ in range(5):
        with pytest.raises(NotFound):
            guard.call("get_run", lambda: (_ for _ in ()).throw(NotFound("no run")))

    assert guard.breaker.state is CircuitState.CLOSED


def test_an_outage_wrapped_in_an_unknown_exception_still_counts_as_an_outage() -> None:
    """urllib3 raises MaxRetryError around the refused connection (its ``reason``): an
    outage, retried and counted, not an unclassified failure."""
    from llmops.resilience.errors import retryable, translate

    class MaxRetryError(Exception):  # the shape of urllib3's
        def __init__(self, reason: BaseException) -> None:
            super().__init__("Max retries exceeded")
            self.reason = reason

    wrapped = MaxRetryError(ConnectionRefusedError(111, "Connection refused"))
    try:
        raise RuntimeError("the client gave up") from wrapped
    except RuntimeError as raised:
        chained = raised

    assert retryable(translate(wrapped, where="tool op"))
    assert retryable(translate(chained, where="tool op"))
    assert not retryable(translate(ValueError("Value out of range"), where="tool op"))
