"""``llmops rollback PLUGIN``: the plugin is disabled and what depends on it moves to its
fallback: a pipeline whose submission never reached the orchestrator runs on the local
executor, one already running there stays (and is listed); ``--dry-run`` prints the same
plan and changes nothing.

The orchestrator is a plugin whose tool calls are real httpx calls ("down": connection
refused). The command runs in this process against the platform's own database, as an
admin would run it next to the servers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.cli import main
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller, memory_tracker_plugin, orchestrator_plugin
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

PLUGIN = orchestrator_plugin(
    "away",
    """
import httpx
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.testing.plugins import QuietOrchestrator

MODE = ["up"]
CLOSED_PORT = [9]
RUNS = {}


class Orchestrator(QuietOrchestrator):
    def _status(self, key):
        return PipelineStatus(
            external_id=key, state=PipelineState.RUNNING,
            stages=[StageStatus(name=n, state=StageState.RUNNING) for n in RUNS[key]],
        )

    def submit(self, spec):
        if MODE[0] == "down":
            httpx.post(f"http://127.0.0.1:{CLOSED_PORT[0]}/api/runs", timeout=2)
        RUNS.setdefault(spec.idempotency_key, [s.name for s in spec.stages])
        return self._status(spec.idempotency_key)

    def status(self, external_id):
        return self._status(external_id)
""",
)


@pytest.fixture
def away(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any, CoreSettings]]:
    name = install("away", PLUGIN)
    settings = make_settings(plugins="away", provider_timeout_seconds=2.0)
    with TestClient(create_app(settings)) as client:
        authenticate(client)
        module = sys.modules[name]
        module.CLOSED_PORT[0] = free_port()
        yield client, module, settings


def rollback(settings: CoreSettings, *args: str) -> Result:
    env = {
        "LLMOPS_DATA_DIR": str(settings.data_dir),
        "LLMOPS_DATABASE_URL": settings.resolved_database_url,
        "LLMOPS_PLUGINS": "away",
    }
    return CliRunner().invoke(main, ["rollback", *args], env=env, catch_exceptions=False)


def pipeline(trace: Path) -> dict[str, Any]:
    stage = {"name": "a", "command": ["sh", "-c", f"echo ran >> {trace}"]}
    return {"name": "p", "provider": "away", "stages": [stage]}


def test_rollback_runs_the_queued_pipelines_locally_and_leaves_the_running_ones_listed(
    away: tuple[TestClient, Any, CoreSettings], api: str, tmp_path: Path
) -> None:
    client, tool, settings = away
    running = client.post(f"{api}/workflows/pipelines", json=pipeline(tmp_path / "running"))
    assert running.status_code == 201, running.text
    assert running.json()["status"] == "running"
    tool.MODE[0] = "down"
    trace = tmp_path / "queued"
    queued = client.post(f"{api}/workflows/pipelines", json=pipeline(trace))
    assert queued.status_code == 202, queued.text  # waits for its orchestrator
    queued_id = queued.json()["id"]

    planned = rollback(settings, "away", "--dry-run")

    assert planned.exit_code == 0, planned.output
    assert (
        "[orchestration] 1 pipeline(s) whose submission never reached away run on the local "
        "executor instead" in planned.output
    )
    assert "[orchestration] 1 pipeline(s) running on away stay there" in planned.output
    assert "dry run: nothing changed" in planned.output
    assert client.get(f"{api}/integrations/away").json()["enabled"] is True
    assert client.get(f"{api}/workflows/pipelines/{queued_id}").json()["provider"] == "away"
    as_json = json.loads(rollback(settings, "away", "--dry-run", "--json").stdout)
    assert as_json["toLocal"] == [queued_id]
    assert as_json["dryRun"] is True

    done = rollback(settings, "away")

    assert done.exit_code == 0, done.output
    assert "rolled back away" in done.output

    def finished() -> Any:
        body = client.get(f"{api}/workflows/pipelines/{queued_id}").json()
        return body if body["status"] == "succeeded" else None

    moved = wait_for(finished, timeout=30, what="the queued pipeline to run locally")
    assert moved["provider"] == "local"
    assert moved["fellBackFrom"] == "away"
    assert trace.read_text() == "ran\n"
    assert len(tool.RUNS) == 1  # the running one's: the queued one never reached the tool
    assert (
        client.get(f"{api}/workflows/pipelines/{running.json()['id']}").json()["provider"] == "away"
    )
    # the running server applies the stored change within 2 s (it re-reads it, throttled)
    wait_for(
        lambda: client.get(f"{api}/integrations/away").json()["enabled"] is False,
        timeout=10,
        what="the server to apply the rollback",
    )
    [entry] = client.get(
        f"{api}/governance/audit-logs", params={"action": "integration.rollback"}
    ).json()["items"]
    assert entry["actor"] == "cli"
    assert entry["resourceId"] == "away"
    # a new pipeline that names no orchestrator goes to the local executor now
    fresh = client.post(
        f"{api}/workflows/pipelines",
        json={"name": "q", "stages": [{"name": "a", "command": ["true"]}]},
    )
    assert fresh.json()["provider"] == "local"


def test_the_built_in_executor_and_unknown_plugins_cannot_be_rolled_back(
    away: tuple[TestClient, Any, CoreSettings],
) -> None:
    _, _, settings = away
    local = rollback(settings, "local")
    unknown = rollback(settings, "nope")

    assert local.exit_code == 1
    assert "built in" in local.output
    assert unknown.exit_code == 1
    assert "no plugin named 'nope'" in unknown.output


def test_rollback_of_a_tracker_copies_its_runs_to_the_tracker_that_serves_next(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    old = install("old", memory_tracker_plugin("old"))
    new = install("new", memory_tracker_plugin("new"))
    settings = make_settings(plugins="old,new")
    with TestClient(create_app(settings)) as client:
        authenticate(client)
        chosen = client.put(f"{api}/integrations/defaults/tracking", json={"provider": "old"})
        assert chosen.status_code == 200, chosen.text
        job = client.post(
            f"{api}/training/jobs", json={"name": "tune", "command": ["true"], "track": True}
        )
        assert job.status_code in (201, 202), job.text
        run = wait_for(
            lambda: (
                (
                    r := client.get(f"{api}/training/jobs/{job.json()['id']}/experiment-run")
                ).status_code
                == 200
                and r.json().get("externalId")
                and r.json()
            ),
            timeout=30,
            what="the job's experiment run",
        )
        assert run["provider"] == "old"
        env = {
            "LLMOPS_DATA_DIR": str(settings.data_dir),
            "LLMOPS_DATABASE_URL": settings.resolved_database_url,
            "LLMOPS_PLUGINS": "old,new",
        }

        planned = CliRunner().invoke(main, ["rollback", "old", "--dry-run"], env=env)
        assert "[tracking] copy 1 experiment run(s) to new" in planned.output, planned.output
        assert "remove the stored default old" in planned.output
        assert sys.modules[new].RUNS == {}

        done = CliRunner().invoke(main, ["rollback", "old"], env=env)

        assert done.exit_code == 0, done.output
        [copied] = sys.modules[new].RUNS.values()
        assert copied.name == sys.modules[old].RUNS[run["externalId"]].name
        moved = client.get(f"{api}/training/jobs/{job.json()['id']}/experiment-run").json()
        assert moved["provider"] == "new"
        assert moved["externalId"] == copied.run_id
