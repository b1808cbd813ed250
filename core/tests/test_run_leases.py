"""Runs held by a lease: a run whose server was killed is taken over — by the restarted
server, or at once by another replica — and goes on: stages that went on are recorded as
they ended, stages killed with the server are retried while they have retries left; a
cancel sent to any replica is carried out by the one that drives the run.

The servers here are real processes (``llmops up``) killed with SIGKILL; a replica in the
test's own process shares their database and data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.db.models import ExecutorInstance, Operation, utcnow
from llmops.services import run_leases
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

FINAL = {"succeeded", "failed", "cancelled"}


def start_server(env: dict[str, str], port: int, log: Any) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmops.cli", "up", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"llmops up exited with {process.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60)
    return process


def pids_with_env(entry: str, program: str) -> list[int]:
    """Host pids of live ``program`` processes whose environment holds ``entry``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if entry.encode() in environ and Path(argv0.decode()).name == program:
            found.append(int(proc.name))
    return found


class Server:
    """``llmops up`` as its own process on the test's data dir and database."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "LLMOPS_DATA_DIR": str(tmp_path / "data"),
            "LLMOPS_DATABASE_URL": database_url,
            "LLMOPS_PLUGINS": "none",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.auth: dict[str, str] = {}
        self.api = ""

    def start(self) -> None:
        port = free_port()
        log_path = self.tmp_path / f"server-{port}.log"
        self.process = start_server(self.env, port, log_path.open("wb"))
        self.api = f"http://127.0.0.1:{port}/llm-ops/v1"
        if not self.auth:  # the first start prints the initial admin key once
            printed = log_path.read_text().splitlines()
            key = next(k for k in printed if k.startswith("llmops_"))
            self.auth = {"Authorization": f"Bearer {key}"}

    def kill(self) -> None:
        """SIGKILL the server (its stages are in sessions of their own: they live on)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(f"{self.api}{path}", headers=self.auth, json=body, timeout=30)

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.api}{path}", headers=self.auth, timeout=30).json()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    running = Server(tmp_path, database_url)
    try:
        yield running
    finally:
        running.stop()


def stage(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", script], **extra}


def running(get: Callable[[str], Any], pipeline_id: str) -> None:
    wait_for(lambda: get(f"/workflows/pipelines/{pipeline_id}")["status"] == "running")


def over(client: TestClient, api: str) -> Callable[[str], Any]:
    """``get`` for :func:`running` and :func:`final` through an in-process platform."""
    return lambda path: client.get(f"{api}{path}").json()


def final(get: Callable[[str], Any], pipeline_id: str, timeout: float = 60) -> Any:
    def done() -> Any:
        body = get(f"/workflows/pipelines/{pipeline_id}")
        return body if body["status"] in FINAL else None

    return wait_for(done, timeout=timeout)


def test_a_run_whose_server_was_killed_goes_on_after_the_restart_and_succeeds(
    server: Server, tmp_path: Path
) -> None:
    """Before: the restart marked the run failed "interrupted", although its stage went on
    and succeeded."""
    go = tmp_path / "go"
    server.start()
    body = server.post(
        "/workflows/pipelines",
        {
            "name": "outlives",
            "stages": [
                stage("long", f"while [ ! -e {go} ]; do sleep 0.1; done; echo long done"),
                stage("after", "echo after done", dependsOn=["long"]),
            ],
        },
    ).json()
    running(server.get, body["id"])
    server.kill()
    go.touch()  # the stage ends while no server watches it
    server.start()
    result = final(server.get, body["id"])
    assert result["status"] == "succeeded", result
    assert [s["state"] for s in result["stages"]] == ["succeeded", "succeeded"]
    logs = server.get(f"/workflows/pipelines/{body['id']}/logs")
    text = "".join(entry["text"] for entry in logs["items"])
    assert "long done" in text
    assert "after done" in text


def test_a_replica_that_dies_has_its_runs_taken_over_by_another_at_once(
    server: Server,
    make_settings: Callable[..., CoreSettings],
    tmp_path: Path,
) -> None:
    """Before: the survivor left the dead replica's runs "running" for as long as it
    stayed down. Three runs: one whose stage lives on, one whose stage died with the
    server (retried: it has a retry left), one cancelled while its owner was dead."""
    go = tmp_path / "go"
    mark = uuid.uuid4().hex
    server.start()
    lives = server.post(
        "/workflows/pipelines",
        {"name": "lives", "stages": [stage("a", f"while [ ! -e {go} ]; do sleep 0.1; done")]},
    ).json()
    attempts = tmp_path / "attempts"
    dies = server.post(
        "/workflows/pipelines",
        {
            "name": "dies",
            "stages": [
                stage(
                    "b",
                    f"echo x >> {attempts}; [ $(wc -l < {attempts}) -gt 1 ] || exec sleep 60",
                    retries=1,
                    env={"DIES_MARK": mark},
                )
            ],
        },
    ).json()
    cancelled = server.post(
        "/workflows/pipelines", {"name": "cancelled", "stages": [stage("c", "exec sleep 60")]}
    ).json()
    for run in (lives, dies, cancelled):
        running(server.get, run["id"])
    [sleeper] = wait_for(lambda: pids_with_env(f"DIES_MARK={mark}", "sleep"))
    server.kill()
    os.killpg(os.getpgid(sleeper), signal.SIGKILL)  # this stage dies with its server

    with TestClient(create_app(make_settings())) as replica:
        replica.headers.update(server.auth)

        get = over(replica, "/llm-ops/v1")
        answer = replica.post(f"/llm-ops/v1/workflows/pipelines/{cancelled['id']}/cancel")
        assert answer.status_code == 202
        assert answer.json()["status"] == "cancelling"
        assert final(get, cancelled["id"], timeout=30)["status"] == "cancelled"
        go.touch()
        assert final(get, lives["id"], timeout=30)["status"] == "succeeded"
        retried = final(get, dies["id"], timeout=30)
        assert retried["status"] == "succeeded", retried
        assert retried["stages"][0]["attempts"] == 2
        assert attempts.read_text().count("x") == 2


def test_a_cancel_sent_to_another_replica_stops_the_run(
    make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str], api: str
) -> None:
    """Before: the other replica answered 200 with status running and did nothing."""
    with (
        TestClient(create_app(make_settings())) as first,
        TestClient(create_app(make_settings())) as second,
    ):
        authenticate(first)
        second.headers.update(first.headers)
        body = first.post(
            f"{api}/workflows/pipelines",
            json={"name": "long", "stages": [stage("a", "exec sleep 60")]},
        ).json()
        running(over(first, api), body["id"])
        answer = second.post(f"{api}/workflows/pipelines/{body['id']}/cancel")
        assert answer.status_code == 202
        assert answer.json()["status"] == "cancelling"
        result = final(over(first, api), body["id"], timeout=10)
        assert result["status"] == "cancelled"
        assert result["stages"][0]["state"] == "cancelled"


def test_a_write_a_killed_process_was_delivering_is_due_again_at_once(
    client: TestClient,
) -> None:
    """Before: it waited for its claim's lease (LLMOPS_OUTBOX_LEASE_SECONDS, a minute)."""
    platform = client.app.state.platform  # type: ignore[attr-defined]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with platform.transaction() as session:
        session.add(ExecutorInstance(id="d" * 32, host=run_leases.HOST, pid=int(dead.stdout)))
        operation = Operation(
            kind="pipeline.submit",
            provider="local",
            capability="orchestration",
            idempotency_key="held-by-the-dead",
            status="running",
            locked_by="d" * 32,
            lease_until=utcnow() + timedelta(minutes=1),
        )
        session.add(operation)
    platform.runs.round()
    with platform.sessions() as session:
        released = session.get(Operation, operation.id)
        assert released is not None
        assert released.lease_until <= utcnow()


def test_a_server_that_stops_cleanly_leaves_its_runs_to_the_process_that_comes_next(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
    tmp_path: Path,
) -> None:
    """A rolling restart (SIGTERM of ``llmops up``) hands the run over: before, stopping
    cancelled it."""
    go = tmp_path / "go"
    with TestClient(create_app(make_settings(), hand_over_runs=True)) as first:
        authenticate(first)
        headers = dict(first.headers)
        body = first.post(
            f"{api}/workflows/pipelines",
            json={
                "name": "handed-over",
                "stages": [
                    stage("a", f"while [ ! -e {go} ]; do sleep 0.1; done; echo a done"),
                    stage("b", "echo b done", dependsOn=["a"]),
                ],
            },
        ).json()
        running(over(first, api), body["id"])
    with TestClient(create_app(make_settings())) as second:
        second.headers.update(headers)
        go.touch()
        result = final(over(second, api), body["id"], timeout=30)
        assert result["status"] == "succeeded", result
        assert [s["attempts"] for s in result["stages"]] == [1, 1]
