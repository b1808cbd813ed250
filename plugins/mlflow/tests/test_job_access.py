"""A job reaches its MLflow run through the platform with its own job token, never with
the integration's: a real ``llmops up`` with MLflow on its local store and a canary token
configured through the API, and a job whose own ``import mlflow`` logs into its run
through the platform's tracker proxy, which serves that run only and stops serving the
token when the job ends."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from llmops.capabilities.tracking import JobAccess, RunSpec, TrackerRequest, TrackerResponse
from llmops.testing.console import ConsoleServer, running_platform
from llmops.testing.waiting import wait_for
from llmops_mlflow.tracker import MlflowTracker

API = "/llm-ops/v1"
CANARY = "canary-mlflow-token-0b7c41"

#: The job: records its environment, logs through mlflow, tries what it may not do, and
#: waits for the test to say "go" (so that the test can use its token meanwhile).
JOB = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    gate = pathlib.Path(sys.argv[1])
    (gate / "env.part").write_text(json.dumps(dict(os.environ)))
    (gate / "env.part").rename(gate / "env.json")  # whole when the test sees it

    import mlflow
    from mlflow.exceptions import MlflowException

    other_run = sys.argv[2]
    refusals = {}
    def refused(name, call):
        try:
            call()
        except MlflowException as exc:
            refusals[name] = exc.error_code

    with mlflow.start_run() as run:
        assert run.info.run_id == os.environ.get("MLFLOW_RUN_ID", run.info.run_id)
        mlflow.log_param("optimizer", "adam")
        mlflow.log_params({"epochs": "3", "warmup": "10"})
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metrics({"loss": 0.25, "acc": 0.75}, step=2)
        mlflow.set_tag("stage", "fit")
        client = mlflow.MlflowClient()
        refused("read another run", lambda: client.get_run(other_run))
        refused("write another run", lambda: client.log_param(other_run, "x", "1"))
        refused("search", lambda: client.search_experiments())
        refused("platform tag", lambda: client.set_tag(run.info.run_id, "llmops.job", "x"))
        history = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
        experiment = client.get_experiment(run.info.experiment_id).name
    (gate / "result.part").write_text(
        json.dumps({"refusals": refusals, "history": history, "experiment": experiment})
    )
    (gate / "result.part").rename(gate / "result.json")
    deadline = time.monotonic() + 120
    while not (gate / "go").exists():
        assert time.monotonic() < deadline, "nobody said go"
        time.sleep(0.05)
    """
)


@pytest.fixture(scope="module")
def platform() -> Iterator[ConsoleServer]:
    """A platform whose tracker is MLflow's local store in its data dir, with a token
    set through the API (a local store needs none: it is the canary)."""
    env = {"LLMOPS_PLUGINS": "mlflow", "MLFLOW_TRACKING_URI": ""}
    with running_platform(env=env, console=False) as server:
        configured = server.api.put(
            f"{API}/integrations/mlflow/config", json={"settings": {"token": CANARY}}
        )
        assert configured.status_code == 200, configured.text
        wait_for(  # MLflow's client loads in the background
            lambda: server.api.post(f"{API}/integrations/mlflow/test").json()["ok"],
            timeout=60,
            interval=0.2,
            what="MLflow's client to start",
        )
        yield server


def _run_of(platform: ConsoleServer, job_id: str) -> dict[str, Any]:
    def created() -> dict[str, Any] | None:
        found: dict[str, Any] = platform.api.get(
            f"{API}/training/jobs/{job_id}/experiment-run"
        ).json()
        return found if found.get("externalId") else None

    run: dict[str, Any] | None = wait_for(created, timeout=60, interval=0.2, what="the job's run")
    assert run is not None
    return run


def _story(platform: ConsoleServer, job_id: str) -> str:
    job = platform.api.get(f"{API}/training/jobs/{job_id}").json()
    logs = platform.api.get(f"{API}/training/jobs/{job_id}/logs").text
    return f"job: {json.dumps(job, indent=1)}\nlogs: {logs[-4000:]}"


def _wait(platform: ConsoleServer, job_id: str, what: str, check: Any, timeout: float = 120) -> Any:
    try:
        return wait_for(check, timeout=timeout, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_story(platform, job_id)}") from exc


def test_a_job_logs_into_its_run_through_the_platform_with_its_own_token_only(
    platform: ConsoleServer, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    other = platform.api.post(f"{API}/training/jobs", json={"name": "other", "command": ["true"]})
    assert other.status_code == 201, other.text
    other_run = _run_of(platform, other.json()["id"])["externalId"]
    script, gate = tmp_path / "job.py", tmp_path / "gate"
    script.write_text(JOB)
    gate.mkdir()
    command = [sys.executable, str(script), str(gate), other_run]
    submitted = platform.api.post(f"{API}/training/jobs", json={"name": "own", "command": command})
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    run = _run_of(platform, job_id)

    _wait(platform, job_id, "the job's mlflow calls", (gate / "result.json").exists)
    environment = json.loads((gate / "env.json").read_text())
    result = json.loads((gate / "result.json").read_text())
    token = environment["LLMOPS_JOB_TOKEN"]
    proxy = f"{platform.url}{API}/training/jobs/{job_id}/experiment-run/tracker"
    job_auth = {"Authorization": f"Bearer {token}"}
    # the job's token, from outside the job, while the job runs
    other_job = httpx.get(
        f"{platform.url}{API}/training/jobs/{other.json()['id']}/experiment-run/tracker"
        f"/api/2.0/mlflow/runs/get",
        params={"run_id": other_run},
        headers=job_auth,
    )
    other_through_own = httpx.get(
        f"{proxy}/api/2.0/mlflow/runs/get", params={"run_id": other_run}, headers=job_auth
    )
    not_offered = httpx.post(f"{proxy}/api/2.0/mlflow/runs/search", json={}, headers=job_auth)
    viewer = platform.api.post(f"{API}/api-keys", json={"name": "v", "role": "viewer"}).json()
    as_viewer = httpx.get(
        f"{proxy}/api/2.0/mlflow/runs/get",
        params={"run_id": run["externalId"]},
        headers={"Authorization": f"Bearer {viewer['key']}"},
    )
    (gate / "go").touch()
    _wait(
        platform,
        job_id,
        "the job to succeed",
        lambda: platform.api.get(f"{API}/training/jobs/{job_id}").json()["status"] == "succeeded",
    )
    after_the_end = httpx.get(
        f"{proxy}/api/2.0/mlflow/runs/get", params={"run_id": run["externalId"]}, headers=job_auth
    )

    # the job's environment: its own token for MLflow, the proxy as tracking URI
    assert environment["MLFLOW_TRACKING_TOKEN"] == token
    assert environment["MLFLOW_TRACKING_URI"] == proxy
    assert environment["MLFLOW_RUN_ID"] == run["externalId"]
    assert not [name for name, value in environment.items() if CANARY in value]
    # what the job logged is in its run
    store = platform.data_dir / "data" / "plugins" / "mlflow" / "mlflow.db"
    logged = MlflowClient(tracking_uri=f"sqlite:///{store}").get_run(run["externalId"])
    assert logged.data.params == {"optimizer": "adam", "epochs": "3", "warmup": "10"}
    assert logged.data.metrics == {"loss": 0.25, "acc": 0.75}
    assert logged.data.tags["stage"] == "fit"
    assert "llmops.job" not in logged.data.tags
    assert result["history"] == [0.5, 0.25]
    assert result["experiment"] == run["experimentName"]
    # what it may not do, as its mlflow client saw it
    assert result["refusals"] == {
        "read another run": "PERMISSION_DENIED",
        "write another run": "PERMISSION_DENIED",
        "search": "ENDPOINT_NOT_FOUND",
        "platform tag": "INVALID_PARAMETER_VALUE",
    }
    assert other_job.status_code == 403  # the platform's policy: its own job only
    assert other_through_own.status_code == 403
    assert other_through_own.json()["error_code"] == "PERMISSION_DENIED"
    assert not_offered.status_code == 404
    assert not_offered.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert as_viewer.status_code == 403
    assert after_the_end.status_code == 401
    other_params = MlflowClient(tracking_uri=f"sqlite:///{store}").get_run(other_run).data.params
    assert "x" not in other_params


# -- the proxy's endpoints, on a tracker of its own (no platform) ---------------------------


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracker:
    root = tmp_path_factory.mktemp("mlflow-proxy")
    return MlflowTracker(f"sqlite:///{root / 'mlflow.db'}", token=SecretStr(CANARY))


def _post(tracker: MlflowTracker, own: str, path: str, body: dict[str, Any]) -> TrackerResponse:
    """POST ``path`` (below MLflow's API) as the job of run ``own``."""
    request = TrackerRequest(method="POST", path=f"api/2.0/mlflow/{path}", body=body)
    return tracker.job_request(own, request)


def _get(tracker: MlflowTracker, own: str, path: str, **query: str) -> TrackerResponse:
    """GET ``path`` (below MLflow's API) as the job of run ``own``."""
    request = TrackerRequest(
        method="GET", path=f"api/2.0/mlflow/{path}", query={k: [v] for k, v in query.items()}
    )
    return tracker.job_request(own, request)


def test_the_proxy_answers_in_mlflows_own_json(tracker: MlflowTracker) -> None:
    run = tracker.create_run(RunSpec(experiment="proxy", run_name="r", params={"lr": "0.1"}))

    renamed = _post(
        tracker, run.run_id, "runs/update", {"run_id": run.run_id, "run_name": "renamed"}
    )
    got = _get(tracker, run.run_id, "runs/get", run_id=run.run_id)
    experiment = _get(tracker, run.run_id, "experiments/get", experiment_id=run.experiment_id)

    assert renamed.status == 200, renamed.body
    assert renamed.body["run_info"]["run_name"] == "renamed"
    assert got.status == 200, got.body
    assert got.body["run"]["info"]["run_id"] == run.run_id
    assert got.body["run"]["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    assert experiment.body["experiment"]["name"] == "proxy"


def test_the_proxy_refuses_in_mlflows_error_shape_what_a_job_may_not_do(
    tracker: MlflowTracker,
) -> None:
    own = tracker.create_run(RunSpec(experiment="proxy", run_name="own", params={"lr": "0.1"}))
    other = tracker.create_run(RunSpec(experiment="elsewhere", run_name="other"))
    metric = {"key": "loss", "value": 1.0, "timestamp": 1, "step": 0}

    answers = {
        "another run": _get(tracker, own.run_id, "runs/get", run_id=other.run_id),
        "another run's legacy id": _post(
            tracker,
            own.run_id,
            "runs/log-parameter",
            {"run_id": own.run_id, "run_uuid": other.run_id, "key": "k", "value": "v"},
        ),
        "another experiment": _get(
            tracker, own.run_id, "experiments/get", experiment_id=other.experiment_id
        ),
        "no run": _post(tracker, own.run_id, "runs/set-tag", {"key": "k", "value": "v"}),
        "not offered": _post(tracker, own.run_id, "runs/search", {}),
        "wrong method": _post(tracker, own.run_id, "runs/get", {"run_id": own.run_id}),
        "platform tag": _post(
            tracker, own.run_id, "runs/log-batch", {"run_id": own.run_id, "tags": [
                {"key": "llmops.idempotency_key", "value": "training-job-other"}
            ]}
        ),
        "platform tag deleted": _post(
            tracker, own.run_id, "runs/delete-tag",
            {"run_id": own.run_id, "key": "llmops.idempotency_key"},
        ),
        "logged model": _post(
            tracker, own.run_id, "runs/log-metric",
            {"run_id": own.run_id, **metric, "model_id": "m-1"},
        ),
        "changed param": _post(
            tracker, own.run_id, "runs/log-parameter",
            {"run_id": own.run_id, "key": "lr", "value": "0.2"},
        ),
        "not json of the message": _post(
            tracker, own.run_id, "runs/log-metric", {"run_id": own.run_id, "value": "high"}
        ),
    }  # fmt: skip

    assert {name: (a.status, a.body["error_code"]) for name, a in answers.items()} == {
        "another run": (403, "PERMISSION_DENIED"),
        "another run's legacy id": (403, "PERMISSION_DENIED"),
        "another experiment": (403, "PERMISSION_DENIED"),
        "no run": (400, "INVALID_PARAMETER_VALUE"),
        "not offered": (404, "ENDPOINT_NOT_FOUND"),
        "wrong method": (404, "ENDPOINT_NOT_FOUND"),
        "platform tag": (400, "INVALID_PARAMETER_VALUE"),
        "platform tag deleted": (400, "INVALID_PARAMETER_VALUE"),
        "logged model": (400, "INVALID_PARAMETER_VALUE"),
        "changed param": (400, "INVALID_PARAMETER_VALUE"),
        "not json of the message": (400, "INVALID_PARAMETER_VALUE"),
    }
    assert all(isinstance(a.body["message"], str) and a.body["message"] for a in answers.values())
    after = tracker.get_run(own.run_id)
    assert after.params == {"lr": "0.1"}
    assert after.latest_metrics == {}
    assert tracker.get_run(other.run_id).params == {}


def test_a_job_reaches_mlflow_directly_only_where_that_needs_nothing_of_the_platforms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
    access = JobAccess(tracker_url="http://platform/proxy", token=SecretStr("job-token"))
    server = "http://mlflow.invalid:5000"

    def uri_and_token(tracker: MlflowTracker) -> tuple[object, object]:
        environment = tracker.job_environment("r1", access)
        token = environment.get("MLFLOW_TRACKING_TOKEN")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        return environment["MLFLOW_TRACKING_URI"], secret

    open_server = MlflowTracker(server, job_tracking_uri="http://mlflow.cluster:5000")
    tokened = MlflowTracker(server, token=SecretStr(CANARY))
    local = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    direct = uri_and_token(open_server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "operator")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "operators-password")

    assert direct == ("http://mlflow.cluster:5000", None)
    assert uri_and_token(tokened) == ("http://platform/proxy", "job-token")
    assert uri_and_token(local) == ("http://platform/proxy", "job-token")
    # basic auth the platform's process has: the job would need it, so it gets the proxy
    assert uri_and_token(MlflowTracker(server)) == ("http://platform/proxy", "job-token")
