"""`llmops mlflow migrate` (the plugin's command through the CLI hook; the core moves the
records): runs the platform recorded under another tracker (the example JSON tracker
here) move into a real MLflow server with their params and full metric histories; a dry
run changes nothing; running it again, or after an interrupted run, makes no second run
and stores no point twice. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.capabilities.tracking import RunSpec
from llmops.cli import main
from llmops.config import CoreSettings
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.postgres import PostgresServer
from llmops_mlflow.testing import MlflowServer
from llmops_mlflow.tracker import MlflowTracker

API = "/llm-ops/v1"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def environment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    values = {
        "LLMOPS_DATA_DIR": str(tmp_path / "data"),
        "LLMOPS_MLFLOW__TRACKING_URI": mlflow_server.url,
    }
    if request.param == "postgresql":
        values["LLMOPS_DATABASE_URL"] = request.getfixturevalue("postgres").create_database()
    else:
        monkeypatch.delenv("LLMOPS_DATABASE_URL", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def recorded(environment: dict[str, str]) -> list[dict[str, Any]]:
    """Two jobs whose runs the example tracker holds, with falling losses."""
    app = create_app(CoreSettings(plugins="example"), start_worker=False)
    jobs = []
    with TestClient(app) as client:
        with app.state.platform.transaction() as session:
            _, key = create_api_key(session=session, name="t", role=Role.ADMIN)
        client.headers["Authorization"] = f"Bearer {key}"
        for index, lr in enumerate(("0.1", "0.01")):
            body = {
                "name": f"job-{index}",
                "command": ["true"],
                "hyperparameters": {"lr": lr},
                "experiment": "migrated",
            }
            job = client.post(f"{API}/training/jobs", json=body)
            assert job.status_code == 201, job.text
            url = f"{API}/training/jobs/{job.json()['id']}/experiment-run"
            points = [
                {"key": "loss", "value": 4.0 / (step + 1) + index, "step": step}
                for step in range(5)
            ]
            logged = client.post(f"{url}/metrics", json={"metrics": points})
            assert logged.status_code == 200, logged.text
            run = client.get(url).json()
            assert run["provider"] == "example"
            jobs.append({"job": job.json(), "run": run})
    return jobs


def runs_of_job(tracker: MlflowTracker, job_id: str) -> list[Any]:
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    return list(
        tracker.client.search_runs(
            experiments, filter_string=f"tags.`llmops.training_job_id` = '{job_id}'"
        )
    )


def migrate(*args: str) -> Any:
    return CliRunner().invoke(main, ["mlflow", "migrate", *args], catch_exceptions=False)


def platform_runs() -> dict[str, dict[str, Any]]:
    app = create_app(CoreSettings(plugins="none"), start_worker=False)
    with TestClient(app), app.state.platform.transaction() as session:
        from sqlalchemy import select

        from llmops.db.models import ExperimentRun

        return {
            row.training_job_id: {"provider": row.provider, "externalId": row.external_id}
            for row in session.scalars(select(ExperimentRun))
        }


def test_a_dry_run_prints_each_move_and_changes_nothing(
    recorded: list[dict[str, Any]], mlflow_server: MlflowServer
) -> None:
    before = platform_runs()

    result = migrate("--dry-run")

    assert result.exit_code == 0, result.output
    for arranged in recorded:
        assert f"would move run {arranged['run']['id']}" in result.output
    assert "would move 2 of 2 run(s) to mlflow (dry run: nothing changed)" in result.output
    assert platform_runs() == before
    tracker = MlflowTracker(mlflow_server.url)
    assert all(not runs_of_job(tracker, a["job"]["id"]) for a in recorded)


def test_runs_move_with_their_history_once_even_when_run_again_or_interrupted(
    recorded: list[dict[str, Any]], mlflow_server: MlflowServer
) -> None:
    tracker = MlflowTracker(mlflow_server.url)
    first = recorded[0]
    # an earlier migration stopped right after creating this run in MLflow
    interrupted = tracker.create_run(
        RunSpec(
            experiment="migrated",
            run_name="job-0",
            idempotency_key=f"training-job-{first['job']['id']}",
            tags={"llmops.training_job_id": first["job"]["id"]},
        )
    )

    moved = migrate()
    again = migrate()

    assert moved.exit_code == 0, moved.output
    assert "moved 2 of 2 run(s) to mlflow" in moved.output
    assert "full history" in moved.output
    assert again.exit_code == 0, again.output
    assert "nothing to move" in again.output
    records = platform_runs()
    for index, arranged in enumerate(recorded):
        job_id = arranged["job"]["id"]
        [run] = runs_of_job(tracker, job_id)
        assert records[job_id] == {"provider": "mlflow", "externalId": run.info.run_id}
        history = tracker.client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [
            (step, 4.0 / (step + 1) + index) for step in range(5)
        ]
        assert run.data.params["lr"] == ("0.1", "0.01")[index]
    # the run made here carries where it came from (the interrupted one was made earlier)
    [second] = runs_of_job(tracker, recorded[1]["job"]["id"])
    assert second.data.tags["llmops.migrated_from"] == "example"
    assert runs_of_job(tracker, first["job"]["id"])[0].info.run_id == interrupted.run_id
