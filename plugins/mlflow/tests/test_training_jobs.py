"""Training jobs tracked in a real MLflow server, through a real ``llmops up`` whose local
executor runs the job's process: the job's run is created on submission and named to the
process, metrics posted to the platform reach MLflow exactly once even when MLflow is
down in the middle of the job, and the job's outputs become the run's artifacts."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops.testing import waiting
from llmops.testing.console import ConsoleServer, running_platform
from llmops.testing.processes import free_port
from llmops_mlflow.testing import MlflowServer, running_mlflow_server

API = "/llm-ops/v1"

#: The job's process: logs through the platform's API one point a request, and through
#: mlflow directly; between its two phases it waits for the test to say "go".
JOB = textwrap.dedent(
    """
    import datetime, json, os, pathlib, sys, time
    import httpx

    gate = pathlib.Path(sys.argv[1])
    out = pathlib.Path(os.environ["LLMOPS_OUTPUT_DIR"])
    api = os.environ["LLMOPS_API_URL"] + "/llm-ops/v1"
    url = f"{api}/training/jobs/{os.environ['LLMOPS_JOB_ID']}/experiment-run/metrics"
    auth = {"Authorization": "Bearer " + os.environ["LLMOPS_JOB_TOKEN"]}
    names = [k for k in os.environ if k.startswith(("MLFLOW_", "LLMOPS_"))]
    seen = {k: os.environ[k] for k in names if "TOKEN" not in k}
    (gate / "env.json").write_text(json.dumps(seen))
    (out / "model").mkdir()
    (out / "model" / "config.json").write_text('{"n_layer": 2}')
    (out / "notes.txt").write_text("trained")

    if "--direct" in sys.argv:
        import mlflow
        given = os.environ["MLFLOW_RUN_ID"]  # start_run() takes it out of the environment
        with mlflow.start_run() as run:
            assert run.info.run_id == given, (run.info.run_id, given)
            mlflow.log_param("logged_by", "mlflow")

    answers = []
    def post(step):
        moment = datetime.datetime.now(datetime.UTC).isoformat()
        point = {"key": "loss", "value": 10.0 / (step + 1), "step": step, "timestamp": moment}
        started = time.monotonic()
        answer = httpx.post(url, json={"metrics": [point]}, headers=auth, timeout=30)
        answers.append(answer.status_code)
        print(step, answer.status_code, f"{time.monotonic() - started:.2f}s", flush=True)

    for step in range(20):
        post(step)
    (gate / "phase1.done").touch()
    deadline = time.monotonic() + 120
    while not (gate / "go").exists():
        assert time.monotonic() < deadline, "nobody said go"
        time.sleep(0.1)
    for step in range(20, 60):
        post(step)
    (gate / "answers.json").write_text(json.dumps(answers))
    """
)


class MlflowOutage:
    """A tracking server the test can stop and bring back on the same store and port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._stack: ExitStack | None = None
        self.server: MlflowServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._stack is None:
            stack = ExitStack()
            self.server = stack.enter_context(running_mlflow_server(self.root, self.port))
            self._stack = stack

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowOutage]:
    outage = MlflowOutage(tmp_path_factory.mktemp("mlflow-outage"))
    outage.start()
    try:
        yield outage
    finally:
        outage.stop()


@pytest.fixture(scope="module")
def platform(mlflow: MlflowOutage) -> Iterator[ConsoleServer]:
    env = {
        "LLMOPS_PLUGINS": "mlflow",
        "LLMOPS_MLFLOW__TRACKING_URI": mlflow.url,
        "LLMOPS_MLFLOW__REQUEST_TIMEOUT_SECONDS": "3",
        "LLMOPS_CIRCUIT_RESET_SECONDS": "2",
        "MLFLOW_TRACKING_URI": "",  # nothing from the test's own environment
    }
    with running_platform(env=env, console=False) as server:
        yield server


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 90.0,
    story: Callable[[], str] = lambda: "",
) -> Any:
    try:
        return waiting.wait_for(check, timeout=timeout, interval=0.25, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{story()}") from exc


def job_story(platform: ConsoleServer, job_id: str) -> Callable[[], str]:
    """The job's state and logs, for a failure message."""

    def tell() -> str:
        job = platform.api.get(f"{API}/training/jobs/{job_id}").json()
        logs = platform.api.get(f"{API}/training/jobs/{job_id}/logs").text
        return f"job: {json.dumps(job, indent=1)}\nlogs: {logs[-4000:]}"

    return tell


def job_status(platform: ConsoleServer, job_id: str) -> dict[str, Any]:
    response = platform.api.get(f"{API}/training/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def job_command(tmp_path: Path, *options: str) -> tuple[list[str], Path]:
    """The job's command line, and the folder where it leaves word and waits for "go"."""
    script = tmp_path / "job.py"
    script.write_text(JOB)
    gate = tmp_path / "gate"
    gate.mkdir()
    return [sys.executable, str(script), str(gate), *options], gate


def submit(platform: ConsoleServer, name: str, command: list[str]) -> httpx.Response:
    return platform.api.post(
        f"{API}/training/jobs",
        json={"name": name, "command": command, "hyperparameters": {"lr": 0.01}},
    )


def operations_of(platform: ConsoleServer, resource_id: str) -> list[dict[str, Any]]:
    response = platform.api.get(f"{API}/operations", params={"resourceId": resource_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def runs_of_job(url: str, job_id: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(
        client.search_runs(experiments, filter_string=f"tags.`llmops.training_job_id` = '{job_id}'")
    )


def test_mlflow_down_mid_job_loses_no_point_and_makes_no_second_run(
    mlflow: MlflowOutage, platform: ConsoleServer, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    command, gate = job_command(tmp_path, "--direct")
    submitted = submit(platform, "outage", command)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    run = platform.api.get(f"{API}/training/jobs/{job_id}/experiment-run").json()
    assert run["externalId"], run
    assert run["params"] == {"lr": "0.01"}

    wait_for("the first phase", (gate / "phase1.done").exists, story=job_story(platform, job_id))
    environment = json.loads((gate / "env.json").read_text())
    assert environment["MLFLOW_RUN_ID"] == run["externalId"]
    assert environment["MLFLOW_TRACKING_URI"] == mlflow.url
    assert environment["LLMOPS_OUTPUT_DIR"]
    tracking = MlflowClient(tracking_uri=mlflow.url)
    assert len(tracking.get_metric_history(run["externalId"], "loss")) == 20

    mlflow.stop()
    (gate / "go").touch()
    wait_for(
        "the job to end",
        lambda: job_status(platform, job_id)["status"] == "succeeded",
        story=job_story(platform, job_id),
    )
    answers = json.loads((gate / "answers.json").read_text())
    assert answers[:20] == [200] * 20
    assert set(answers[20:]) <= {200, 202}
    assert answers.count(202) >= 30, answers  # acknowledged, queued while MLflow was away
    stale = platform.api.get(f"{API}/training/jobs/{job_id}/experiment-run")
    assert stale.status_code == 200, stale.text
    assert stale.json()["stale"] is True
    assert stale.json()["degraded"] is True
    assert stale.json()["latestMetrics"] == {"loss": 10.0 / 60}

    mlflow.start()
    wait_for(
        "the queue to drain",
        lambda: all(op["status"] == "succeeded" for op in operations_of(platform, run["id"])),
    )

    history = tracking.get_metric_history(run["externalId"], "loss")
    assert sorted(m.step for m in history) == list(range(60))  # each point exactly once
    [only] = runs_of_job(mlflow.url, job_id)
    assert only.info.run_id == run["externalId"]
    assert only.info.status == "FINISHED"
    assert only.data.params == {"lr": "0.01", "logged_by": "mlflow"}
    assert only.data.tags["llmops.job_url"].endswith(f"/training/{job_id}")
    artifacts = {a.path for a in tracking.list_artifacts(run["externalId"])}
    assert artifacts == {"model", "notes.txt"}
    assert [a.path for a in tracking.list_artifacts(run["externalId"], "model")] == [
        "model/config.json"
    ]
    operations = operations_of(platform, run["id"])
    coalesced = [op for op in operations if (op["result"] or {}).get("coalescedInto")]
    sent = [op for op in operations if op["kind"] == "run.metrics" and op not in coalesced]
    assert coalesced, "queued points should leave together"
    assert len(sent) < 40
    fresh = platform.api.get(f"{API}/training/jobs/{job_id}/experiment-run").json()
    assert fresh["stale"] is False
    assert fresh["status"] == "finished"


def test_a_job_submitted_while_mlflow_is_down_waits_for_its_run_then_runs_with_it(
    mlflow: MlflowOutage, platform: ConsoleServer, tmp_path: Path
) -> None:
    command, gate = job_command(tmp_path)
    (gate / "go").touch()
    mlflow.stop()
    try:
        submitted = submit(platform, "waiting", command)
        assert submitted.status_code == 202, submitted.text
        body = submitted.json()
        assert body["degraded"] is True
        assert "waiting for its experiment run" in body["degradedReason"]
        job_id = body["id"]
        pipeline_id = job_status(platform, job_id)["pipelineId"]

        def tried_and_waiting() -> bool:
            [submission] = operations_of(platform, pipeline_id)
            return submission["status"] == "pending" and "waiting for its experiment run" in (
                submission["lastError"] or ""
            )

        # the worker tries the submission again, and it keeps waiting: the job must not start
        wait_for("the worker to try the submission", tried_and_waiting, timeout=30)
        assert job_status(platform, job_id)["status"] == "pending"
        assert not (gate / "env.json").exists()
    finally:
        mlflow.start()

    wait_for(
        "the job to end",
        lambda: job_status(platform, job_id)["status"] == "succeeded",
        story=job_story(platform, job_id),
    )
    run = platform.api.get(f"{API}/training/jobs/{job_id}/experiment-run").json()
    environment = json.loads((gate / "env.json").read_text())
    assert environment["MLFLOW_RUN_ID"] == run["externalId"]
    [only] = runs_of_job(mlflow.url, job_id)
    assert only.info.run_id == run["externalId"]
    wait_for(
        "the run to be finished",
        lambda: all(op["status"] == "succeeded" for op in operations_of(platform, run["id"])),
    )
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=mlflow.url).get_metric_history(run["externalId"], "loss")
    assert sorted(m.step for m in history) == list(range(60))
