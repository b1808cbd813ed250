"""Writes to a tool that is down wait in the outbox and arrive exactly once when it is
back, also when the worker is killed mid-delivery. The tool is a real HTTP server on
127.0.0.1 that dedups by idempotency key and counts every request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.db.models import Operation
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for


class Orchestra:
    """The tool: runs keyed by idempotency key; modes up, refuse, 503, hang, slow."""

    def __init__(self) -> None:
        self.mode = "up"
        #: set when the test ends: a hanging request returns at once instead of at 3 s
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.created: dict[str, int] = {}
        orchestra = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["key"]
                mode = orchestra.mode
                if mode == "503":
                    self._send(503, {"error": "maintenance"})
                    return
                if mode == "hang":  # the tool takes far longer than the platform's deadline
                    orchestra.released.wait(3)
                if mode == "slow":  # each create costs the tool a little time
                    orchestra.released.wait(0.01)
                with orchestra.lock:
                    orchestra.requests[key] = orchestra.requests.get(key, 0) + 1
                    if key not in orchestra.created:
                        orchestra.created[key] = len(orchestra.created) + 1
                self._send(201, {"id": key})

            def do_GET(self) -> None:
                self._send(200, {"id": self.path.rsplit("/", 1)[-1], "phase": "Succeeded"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()

    def refuse(self) -> None:
        """Stop listening: connections are refused (the port stays reserved)."""
        self.server.socket.listen(0)
        self.server.shutdown()
        self.thread = None
        self.server.server_close()

    def reopen(self) -> None:
        handler = self.server.RequestHandlerClass
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.daemon_threads = True
        self.start()


PLUGIN = """
import httpx
from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.plugins.info import PluginInfo, PluginSettings
from llmops.deadlines import deadline_remaining


class Settings(PluginSettings):
    url: str = "http://127.0.0.1:9"


class HttpOrchestrator:
    honours_deadline = True

    def __init__(self, url):
        self.url = url

    def _status(self, run_id, stages):
        return PipelineStatus(
            external_id=run_id, state=PipelineState.SUCCEEDED,
            stages=[StageStatus(name=s, state=StageState.SUCCEEDED) for s in stages],
        )

    def submit(self, spec):
        response = httpx.post(
            f"{self.url}/runs", json={"key": spec.idempotency_key},
            timeout=deadline_remaining(5.0),
        )
        response.raise_for_status()
        return self._status(response.json()["id"], [s.name for s in spec.stages])

    def status(self, external_id):
        response = httpx.get(f"{self.url}/runs/{external_id}", timeout=deadline_remaining(5.0))
        response.raise_for_status()
        return self._status(external_id, ["only"])

    def logs(self, external_id, *, stage=None, tail_bytes=None):
        return []

    def retry(self, external_id):
        return self.status(external_id)

    def cancel(self, external_id):
        return self.status(external_id)

    def ui_url(self, external_id):
        return None

    def health(self):
        return Health(status=HealthStatus.OK)


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="httporch", version="1.0", display_name="HTTP orchestrator",
        capabilities=frozenset({Capability.ORCHESTRATION}), settings_model=Settings,
    )


@hookimpl
def llmops_orchestration(settings, context):
    return HttpOrchestrator(settings.url)
"""

WRITES = 500


@pytest.fixture
def orchestra() -> Iterator[Orchestra]:
    tool = Orchestra()
    try:
        yield tool
    finally:
        tool.released.set()
        if tool.thread is not None:
            tool.server.shutdown()
        tool.server.server_close()


@pytest.fixture
def plugin_site(install: PluginInstaller) -> Path:
    """The folder the plugin was installed into (for a worker process's PYTHONPATH)."""
    install("httporch", PLUGIN)
    return install.root / "site-httporch"


def authenticated(client: TestClient) -> TestClient:
    platform = client.app.state.platform  # type: ignore[attr-defined]
    with platform.transaction() as session:
        _, key = create_api_key(session=session, name="test admin", role=Role.ADMIN)
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def settings_for(
    make_settings: Callable[..., CoreSettings], orchestra: Orchestra, **extra: Any
) -> CoreSettings:
    os.environ["LLMOPS_HTTPORCH__URL"] = f"http://127.0.0.1:{orchestra.port}"
    return make_settings(
        plugins="httporch",
        provider_timeout_seconds=0.5,
        circuit_failure_threshold=3,
        circuit_reset_seconds=0.5,
        outbox_lease_seconds=2.0,
        **extra,
    )


def submit(client: TestClient, api: str, i: int) -> Any:
    return client.post(
        f"{api}/workflows/pipelines",
        json={
            "name": f"w{i}",
            "provider": "httporch",
            "stages": [{"name": "only", "command": ["true"]}],
        },
    )


def counts(client: TestClient) -> dict[str, int]:
    platform = client.app.state.platform  # type: ignore[attr-defined]
    with platform.transaction() as session:
        rows = session.execute(
            select(Operation.status, func.count()).group_by(Operation.status)
        ).all()
    return {status: n for status, n in rows}


def test_writes_to_a_down_tool_are_queued_then_delivered_exactly_once(
    make_settings: Callable[..., CoreSettings],
    orchestra: Orchestra,
    plugin_site: Path,
    api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMOPS_HTTPORCH__URL", f"http://127.0.0.1:{orchestra.port}")
    settings = settings_for(make_settings, orchestra)
    with TestClient(create_app(settings)) as client:
        authenticated(client)
        statuses: list[int] = []
        started = time.monotonic()
        orchestra.refuse()  # connection refused
        statuses += [submit(client, api, i).status_code for i in range(150)]
        orchestra.reopen()
        orchestra.mode = "503"
        statuses += [submit(client, api, i).status_code for i in range(150, 300)]
        orchestra.mode = "hang"
        statuses += [submit(client, api, i).status_code for i in range(300, WRITES)]
        elapsed = time.monotonic() - started

        assert not [s for s in statuses if s >= 500]
        assert statuses.count(202) == WRITES
        assert elapsed < 60, f"{WRITES} writes took {elapsed:.1f} s"
        body = submit(client, api, WRITES).json()  # one more, to look at
        assert body["degraded"] is True
        assert body["operationId"]
        assert client.get(f"{api}/operations/{body['operationId']}").json()["status"] in {
            "pending",
            "running",
        }

        orchestra.mode = "up"
        wait_for(lambda: counts(client).get("succeeded") == WRITES + 1, timeout=120)

    assert len(orchestra.created) == WRITES + 1  # nothing missing
    assert sorted(orchestra.created.values()) == list(range(1, WRITES + 2))  # one object each


def test_a_worker_killed_mid_delivery_loses_and_duplicates_nothing(
    make_settings: Callable[..., CoreSettings],
    orchestra: Orchestra,
    plugin_site: Path,
    api: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LLMOPS_HTTPORCH__URL", f"http://127.0.0.1:{orchestra.port}")
    settings = settings_for(make_settings, orchestra)
    with TestClient(create_app(settings, start_worker=False)) as client:
        authenticated(client)
        orchestra.mode = "503"
        statuses = [submit(client, api, i).status_code for i in range(WRITES)]
        assert set(statuses) == {202}

        orchestra.mode = "slow"
        env = {
            **os.environ,
            "LLMOPS_DATA_DIR": str(settings.data_dir),
            "LLMOPS_DATABASE_URL": settings.resolved_database_url,
            "LLMOPS_PLUGINS": "httporch",
            "LLMOPS_OUTBOX_LEASE_SECONDS": "2",
            "LLMOPS_CIRCUIT_RESET_SECONDS": "0.5",
            "PYTHONPATH": os.pathsep.join([str(plugin_site), *sys.path]),
        }
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "llmops.cli", "worker", "--interval", "0.1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: len(orchestra.created) >= 50, timeout=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        delivered_before = len(orchestra.created)
        assert delivered_before < WRITES

        worker = subprocess.Popen(
            [sys.executable, "-m", "llmops.cli", "worker", "--interval", "0.1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: counts(client).get("succeeded") == WRITES, timeout=180)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

    assert len(orchestra.created) == WRITES
    assert sorted(orchestra.created.values()) == list(range(1, WRITES + 1))
