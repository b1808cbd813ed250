"""Training jobs whose part a test plays: :func:`start_job` submits a job whose own
process only sleeps and mints a token scoped to it, as the job's process would get in
``LLMOPS_JOB_TOKEN``; the test then calls the platform as that job (log metrics, read its
run) and cancels it at the end."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from llmops.services.api_keys import Role, create_api_key

API = "/llm-ops/v1"


@dataclass(frozen=True)
class JobHandle:
    id: str
    token: str


def start_job(client: Any, *, name: str = "job", track: bool = True) -> JobHandle:
    """Submit a sleeping job through ``client`` (a TestClient of a started app)."""
    response = client.post(
        f"{API}/training/jobs",
        json={
            "name": name,
            "command": [sys.executable, "-c", "import time; time.sleep(120)"],
            "track": track,
        },
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    with client.app.state.platform.transaction() as session:
        _, token = create_api_key(
            session=session, name=f"job {job_id}", role=Role.JOB, training_job_id=job_id
        )
    return JobHandle(job_id, token)


def cancel_job(client: Any, job: JobHandle) -> None:
    client.post(f"{API}/training/jobs/{job.id}/cancel")
