"""One secret, followed everywhere: an MLflow token set through the integrations API, then a
training job that prints its whole environment. The token must appear in no answer of the
API, no log (the job's, the server's), no stage environment, no file under the data dir,
and no page of the database; nor may it stay in the server's own environment."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.models import serving_in_thread
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

CANARY = "canary-mlflow-token-9d1e7c42"

#: Prints the environment, then logs into its run with MLflow's own client (through the
#: platform, with the job's token, never the integration's).
JOB = """
import os, sys
for name in sorted(os.environ):
    print(f"{name}={os.environ[name]}")
import mlflow
with mlflow.start_run():
    mlflow.log_param("canary_probe", "1")
print("logged", flush=True)
"""

READS = (
    "/integrations",
    "/integrations/mlflow",
    "/integrations/defaults",
    "/training/jobs",
    "/workflows/pipelines",
    "/operations",
    "/governance/audit-logs",
    "/health",
    "/me",
)


def test_an_integration_token_reaches_no_answer_log_stage_file_or_database_page(
    make_settings: Callable[..., CoreSettings],
    api: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # the job reaches its tracker through the platform: it must listen
    settings = make_settings(plugins="mlflow", port=port)
    app = create_app(settings)
    seen: list[str] = []
    with serving_in_thread(app, port=port) as url, httpx.Client(base_url=url, timeout=30) as client:
        with app.state.platform.transaction() as session:
            _, key = create_api_key(session=session, name="canary-admin", role=Role.ADMIN)
        client.headers["Authorization"] = f"Bearer {key}"
        configured = client.put(
            f"{api}/integrations/mlflow/config", json={"settings": {"token": CANARY}}
        )
        assert configured.status_code == 200, configured.text
        seen.append(configured.text)
        job = client.post(
            f"{api}/training/jobs",
            json={"name": "canary", "command": [sys.executable, "-c", JOB]},
        )
        assert job.status_code in (201, 202), job.text
        seen.append(job.text)
        job_id = job.json()["id"]

        def ended() -> Any:
            body = client.get(f"{api}/training/jobs/{job_id}").json()
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        body = wait_for(ended, timeout=90)
        logs = client.get(f"{api}/training/jobs/{job_id}/logs")
        output = logs.json()["items"][0]["text"]
        assert body["status"] == "succeeded", output
        assert "logged" in output  # MLflow's client in the job reached its run
        assert "MLFLOW_TRACKING_TOKEN=[redacted]" in output  # the job's own token, scrubbed
        seen += [logs.text, client.get(f"{api}/training/jobs/{job_id}").text]
        seen += [client.get(f"{api}{path}").text for path in READS]
        pipeline = body["pipelineId"]
        seen.append(client.get(f"{api}/workflows/pipelines/{pipeline}/logs").text)
        run = client.get(f"{api}/training/jobs/{job_id}/experiment-run")
        assert run.json()["params"].get("canary_probe") == "1", run.text
        seen.append(run.text)
        seen.append(client.post(f"{api}/integrations/mlflow/test").text)
        pages = _database_pages(app)
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ

    for answer in seen:
        assert CANARY not in answer
    assert CANARY not in caplog.text
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in pages


def _database_pages(app: Any) -> str:
    """Every row of every table, as text (on SQLite the file's bytes are read too, above)."""
    engine = app.state.platform.engine
    rows: list[str] = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            result = connection.execute(text(f'SELECT * FROM "{table}"'))
            rows += [repr(tuple(row)) for row in result]
    return "\n".join(rows)
