"""The job-side client (llmops.jobclient) against a real platform: the app in process,
with the example tracker, reached through httpx (directly, or through a network that
fails on cue)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llmops.jobclient import (
    MAX_POINTS_PER_REQUEST,
    JobClient,
    MetricsNotDelivered,
    dataset_path,
    hyperparameters,
    output_dir,
)
from llmops.testing.jobs import JobHandle as Job
from llmops.testing.jobs import cancel_job, start_job

API = "/llm-ops/v1"
URL = "http://testserver"  # the TestClient's own base URL


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The client speaks HTTP only: one database backend is enough here."""
    return f"sqlite:///{tmp_path / 'llmops.db'}"


@pytest.fixture
def job(platform: TestClient) -> Iterator[Job]:
    started = start_job(platform, name="logger")
    yield started
    cancel_job(platform, started)


def history(platform: TestClient, job_id: str, key: str) -> list[dict[str, Any]]:
    """The tracker's points of ``key`` in the job's run, through the public API."""
    run = platform.get(f"{API}/training/jobs/{job_id}/experiment-run").json()
    compared = platform.post(
        f"{API}/experiments/compare", json={"runIds": [run["externalId"]], "metrics": [key]}
    )
    assert compared.status_code == 200, compared.text
    points: list[dict[str, Any]] = compared.json()["runs"][0]["metrics"][key]
    return points


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class Network:
    """An httpx transport to the in-process platform that fails on cue, one fault per
    request: "connect" (refused), "lost" (the platform got it, the answer was lost), or
    "503" (a proxy in front of the platform answers it, with Retry-After: 2)."""

    def __init__(self, platform: TestClient, faults: list[str | None] | None = None) -> None:
        self.platform = platform
        self.faults = list(faults or [])
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if fault == "503":
            return httpx.Response(
                503,
                headers={"Retry-After": "2"},
                json={"title": "Service unavailable", "status": 503, "detail": "restarting"},
            )
        self.bodies.append(json.loads(request.content))
        answer = self.platform.request(
            request.method, str(request.url), headers=request.headers, content=request.content
        )
        if fault == "lost":
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def test_points_logged_with_the_job_token_reach_the_run_with_their_own_timestamps(
    platform: TestClient, job: Job
) -> None:
    client = JobClient(URL, job.id, job.token, http=platform, flush_every=10)
    values = [3.0 / (step + 1) for step in range(25)]
    before = datetime.now(UTC).replace(microsecond=0)
    for step, value in enumerate(values):
        client.log_metric("loss", value, step)
        if step == 19:
            assert (client.pending, client.delivered) == (0, 20)  # two automatic flushes
    assert client.pending == 5
    client.close()
    after = datetime.now(UTC)

    assert (client.delivered, client.pending, client.dropped) == (25, 0, 0)
    points = history(platform, job.id, "loss")
    assert [(p["step"], p["value"]) for p in points] == list(enumerate(values))
    stamps = [instant(p["timestamp"]) for p in points]
    assert stamps == sorted(stamps)  # stamped when logged, not when sent
    assert before <= stamps[0]
    assert stamps[-1] <= after
    run = platform.get(f"{API}/training/jobs/{job.id}/experiment-run").json()
    assert run["latestMetrics"]["loss"] == pytest.approx(values[-1])


def test_points_are_flushed_once_flush_interval_seconds_passed(
    platform: TestClient, job: Job
) -> None:
    now = [100.0]
    client = JobClient(
        URL,
        job.id,
        job.token,
        http=platform,
        flush_every=1000,
        flush_interval=5.0,
        clock=lambda: now[0],
    )
    client.log_metrics({"loss": 2.0, "accuracy": 0.25}, step=1)
    now[0] += 4.9
    client.log_metric("loss", 1.5, step=2)
    assert client.pending == 3

    now[0] += 0.2
    client.log_metric("loss", 1.0, step=3)

    assert (client.pending, client.delivered) == (0, 4)
    assert [p["value"] for p in history(platform, job.id, "loss")] == [2.0, 1.5, 1.0]
    assert [p["value"] for p in history(platform, job.id, "accuracy")] == [0.25]


def test_a_lost_answer_and_a_503_are_retried_with_backoff_and_the_resent_points_are_identical(
    platform: TestClient, job: Job
) -> None:
    network = Network(platform, faults=["lost", "503"])
    pauses: list[float] = []
    client = JobClient(URL, job.id, job.token, http=network.client(), sleep=pauses.append)
    for step in range(6):
        client.log_metric("loss", 1.0 / (step + 1), step)

    assert client.flush() == 6

    assert pauses == [0.5, 2.0]  # backoff, then the 503's Retry-After
    first, resent = network.bodies
    assert first == resent  # the same points, timestamps included
    # both deliveries reached the tracker; identical points are stored once
    sent = {(m["step"], m["value"], instant(m["timestamp"])) for m in first["metrics"]}
    stored = [
        (p["step"], p["value"], instant(p["timestamp"])) for p in history(platform, job.id, "loss")
    ]
    assert len(sent) == 6
    assert len(stored) == 6
    assert set(stored) == sent


def test_while_the_platform_is_away_points_wait_and_training_goes_on(
    platform: TestClient, job: Job
) -> None:
    network = Network(platform, faults=["connect"] * 3)
    now = [0.0]
    stderr = io.StringIO()
    pauses: list[float] = []
    client = JobClient(
        URL,
        job.id,
        job.token,
        http=network.client(),
        flush_every=2,
        flush_interval=10.0,
        retries=2,
        stderr=stderr,
        clock=lambda: now[0],
        sleep=pauses.append,
    )

    client.log_metric("loss", 4.0, 1)
    client.log_metric("loss", 3.0, 2)  # the automatic flush fails three times: no error

    assert (client.pending, client.delivered) == (2, 0)
    assert pauses == [0.5, 1.0]
    assert "could not reach the platform" in stderr.getvalue()
    assert "ConnectError" in stderr.getvalue()
    client.log_metric("loss", 2.0, 3)  # it waits (20s) before trying again
    assert client.pending == 3

    now[0] += 20.0
    client.log_metric("loss", 1.0, 4)  # the platform is back
    assert (client.pending, client.delivered) == (0, 4)
    assert [p["value"] for p in history(platform, job.id, "loss")] == [4.0, 3.0, 2.0, 1.0]


def test_an_explicit_flush_raises_when_the_platform_stays_away_and_keeps_the_points(
    platform: TestClient, job: Job
) -> None:
    network = Network(platform, faults=["503"] * 3)
    client = JobClient(
        URL, job.id, job.token, http=network.client(), retries=2, sleep=lambda _: None
    )
    client.log_metric("loss", 1.0, 1)

    with pytest.raises(MetricsNotDelivered, match="HTTP 503: restarting") as raised:
        client.flush()

    assert (raised.value.retryable, raised.value.points) == (True, 1)
    assert client.pending == 1
    assert client.flush() == 1  # the network has no faults left


def test_points_the_platform_refuses_are_dropped_with_its_reason(
    platform: TestClient, job: Job
) -> None:
    other = start_job(platform, name="logger")
    stderr = io.StringIO()
    # the token of one job, used to log to another job's run
    client = JobClient(URL, other.id, job.token, http=platform, stderr=stderr)
    client.log_metric("loss", 1.0, 1)

    with pytest.raises(MetricsNotDelivered, match="HTTP 403") as raised:
        client.flush()

    assert raised.value.retryable is False
    assert (client.pending, client.dropped, client.delivered) == (0, 1, 0)
    client.close()
    assert stderr.getvalue() == ""  # nothing was left to report
    platform.post(f"{API}/training/jobs/{other.id}/cancel")


def test_a_job_without_an_experiment_run_gets_one_on_its_first_flush(
    platform: TestClient,
) -> None:
    job = start_job(platform, name="logger", track=False)
    assert platform.get(f"{API}/training/jobs/{job.id}/experiment-run").status_code == 404

    with JobClient(URL, job.id, job.token, http=platform) as client:
        client.log_metric("loss", 0.5, 7)

    assert client.delivered == 1
    assert [(p["step"], p["value"]) for p in history(platform, job.id, "loss")] == [(7, 0.5)]
    platform.post(f"{API}/training/jobs/{job.id}/cancel")


def test_more_points_than_one_request_may_carry_leave_in_several_requests(
    platform: TestClient, job: Job
) -> None:
    network = Network(platform)
    client = JobClient(
        URL, job.id, job.token, http=network.client(), flush_every=100_000, flush_interval=1e9
    )
    total = MAX_POINTS_PER_REQUEST + 50
    for step in range(total):
        client.log_metric("loss", float(step), step)

    assert client.flush() == total

    assert [len(body["metrics"]) for body in network.bodies] == [MAX_POINTS_PER_REQUEST, 50]
    points = history(platform, job.id, "loss")
    assert len(points) == total
    assert points[-1]["value"] == total - 1


def test_without_the_platforms_variables_logging_does_nothing_and_says_so_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = JobClient.from_env({"LLMOPS_API_URL": "http://127.0.0.1:9"})

    with client:
        for step in range(3):
            client.log_metric("loss", 1.0, step)
        assert client.flush() == 0

    assert client.enabled is False
    assert client.missing == ("LLMOPS_JOB_ID", "LLMOPS_JOB_TOKEN")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "llmops jobclient: LLMOPS_JOB_ID, LLMOPS_JOB_TOKEN not set (not run by the "
        "platform?): metrics are not logged"
    ]


def test_from_env_reads_the_variables_the_platform_gives_a_job(
    platform: TestClient, job: Job
) -> None:
    environ = {"LLMOPS_API_URL": URL + "/", "LLMOPS_JOB_ID": job.id, "LLMOPS_JOB_TOKEN": job.token}
    with JobClient.from_env(environ, http=platform) as client:
        client.log_metric("eval_loss", 2.5, 3)

    assert (client.enabled, client.job_id, client.delivered) == (True, job.id, 1)
    assert history(platform, job.id, "eval_loss")[0]["value"] == 2.5


@pytest.mark.parametrize(
    ("key", "value"), [("loss", math.nan), ("loss", math.inf), ("", 1.0), ("k" * 251, 1.0)]
)
def test_a_point_json_cannot_carry_or_the_platform_would_refuse_is_refused_at_once(
    key: str, value: float
) -> None:
    client = JobClient("http://127.0.0.1:9", "job", "token")
    with pytest.raises(ValueError, match=r"not finite|1 to 250 characters"):
        client.log_metric(key, value, 1)
    assert client.pending == 0


def test_hyperparameters_dataset_and_output_come_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "LLMOPS_HYPERPARAMETERS": '{"lr": 0.01, "steps": 20}',
        "LLMOPS_DATASET_PATH": str(tmp_path / "data"),
        "LLMOPS_OUTPUT_DIR": str(tmp_path / "out"),
    }

    assert hyperparameters(environ) == {"lr": 0.01, "steps": 20}
    assert dataset_path(environ) == tmp_path / "data"
    assert output_dir(environ) == tmp_path / "out"
    assert (hyperparameters({}), dataset_path({}), output_dir({})) == ({}, None, None)
    with pytest.raises(ValueError, match="not a JSON object"):
        hyperparameters({"LLMOPS_HYPERPARAMETERS": "[1, 2]"})
    with pytest.raises(ValueError, match="not JSON"):
        hyperparameters({"LLMOPS_HYPERPARAMETERS": "{lr: 1}"})
